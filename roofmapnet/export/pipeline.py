"""The whole RoofMapNet inference pipeline as one export-friendly module: pixels in, padded wireframes out.

:class:`ExportPipeline` re-expresses :meth:`RoofMapNet.predict <roofmapnet.models.roofmapnet.RoofMapNet.predict>`
with tensor operations only, so that ``torch.onnx.export`` (TorchScript tracer) and ``torch.jit.trace`` record one
graph whose sizes follow the data: no ``.tolist()``, ``int()`` or Python branch on a tensor value.  It reuses the
model's submodules and weights (``model.detection``); nothing is re-implemented except the decoding glue.

Contract (version :data:`CONTRACT_VERSION`)
-------------------------------------------
Inputs:

* ``image`` — [B, 3, S, S] float32, **RGB pixel values in the 0-255 scale, not normalised** (a uint8 image cast
  to float32), already resized to the network input ``S = model.image_size`` (the same bilinear, anisotropic
  resize as ``roofmap infer``).  Normalisation by ``model.image.mean`` / ``stddev`` happens inside the graph.
  The batch size is dynamic.
* ``score_threshold`` — [] float32: lines with score > this are returned (ONNX: default
  ``model.line_score_thres``, an overridable initializer; TorchScript: an optional float argument).
* ``junction_threshold`` — [] float32: junction proposal threshold (default ``model.eval_junc_thres``).

Outputs (coordinates are **(x, y) pixels of the network input** S×S, continuous, pixel edges at integers —
the heatmap's (y, x) swapped and multiplied by the stride ``S / heatmap_size`` = 4, an exact operation):

* ``lines`` — [B, Lmax, 2, 2] float32, ``lines[b, i] = ((x1, y1), (x2, y2))``; image ``b``'s lines are the first
  ``line_counts[b]`` rows, sorted by descending score (ties: candidate order); padding rows are 0.
  ``Lmax = max_b line_counts[b]`` (0 when no image has a line).
* ``scores`` — [B, Lmax] float32 verifier probabilities; padding 0.
* ``line_counts`` — [B] int64.
* ``junctions`` — [B, Kmax, 2] float32 (x, y) junction proposals in rank (score-descending) order; padding 0.
* ``junction_scores`` — [B, Kmax] float32; padding 0.
* ``junction_counts`` — [B] int64, ``K_b = clamp(#{NMS peaks > junction_threshold}, 2, n_dyn_junc)``.

Everything of :meth:`RoofMapNet.predict` is inside: normalisation, backbone + QCCM, 3×3 junction NMS, the
data-dependent top-K, the enumeration of all pairs u < v of valid proposals (a constant ``triu`` table over
``n_dyn_junc`` ranks masked by validity, then ``nonzero``, so only the ``Σ K_b(K_b−1)/2`` real candidates are
verified), LoI sampling, the occlusion module, the classifier, thresholding and per-image sorting.

Differences from eager decoding that do not change results:

* LoI features are max-pooled on the fly (one gather per position inside a pooling window) instead of first
  materialising the [L, dim_loi, n_pts0] tensor, so peak memory is ``n_pts0 / n_pts1`` times smaller and no
  ``verifier_chunk`` loop is needed; every sample is computed with the same arithmetic as
  :func:`roofmapnet.models.loi.loi_sample`.
* Junctions with exactly equal NMS scores are ranked by flat pixel index (lower first, ONNX ``TopK``'s rule);
  ``torch.topk`` on CPU leaves the order of ties unspecified, which can swap the endpoints of a line between two
  tied junctions (see :mod:`roofmapnet.export.parity`).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final

import torch
from torch import Tensor, nn

from roofmapnet import __version__
from roofmapnet.config import config_from_dict
from roofmapnet.config.schema import ModelConfig, RootConfig
from roofmapnet.errors import CheckpointError, ConfigError, RoofMapError
from roofmapnet.models.loi import loi_points
from roofmapnet.models.proposals import eval_k, nms3x3
from roofmapnet.models.roofmapnet import RoofMapNet
from roofmapnet.models.sampler import FEAT_DIM
from roofmapnet.models.verifier import occlusion_mask
from roofmapnet.utils.device import EXPORT_PRECISIONS

#: Version of the input/output contract above (stored in the exported files' metadata).
CONTRACT_VERSION: Final = 1
#: Graph input names, in positional order.
INPUT_NAMES: Final = ("image", "score_threshold", "junction_threshold")
#: Graph output names, in order.
OUTPUT_NAMES: Final = ("lines", "scores", "line_counts", "junctions", "junction_scores", "junction_counts")
#: Dynamic axes of the ONNX graph (batch everywhere, the padded line / junction counts).
DYNAMIC_AXES: Final = {
    "image": {0: "batch"},
    "lines": {0: "batch", 1: "max_lines"},
    "scores": {0: "batch", 1: "max_lines"},
    "line_counts": {0: "batch"},
    "junctions": {0: "batch", 1: "max_junctions"},
    "junction_scores": {0: "batch", 1: "max_junctions"},
    "junction_counts": {0: "batch"},
}
#: ``roofmapnet.format`` metadata values.
ONNX_FORMAT: Final = "roofmapnet-onnx"
TORCHSCRIPT_FORMAT: Final = "roofmapnet-torchscript"
#: Name of the metadata file inside a TorchScript archive (``torch.jit.save(..., _extra_files=...)``).
TORCHSCRIPT_METADATA_FILE: Final = "roofmapnet.json"
INPUT_FORMAT: Final = (
    "image: [B, 3, S, S] float32 RGB pixel values 0-255 (not normalised), resized to S = input_size; "
    "score_threshold, junction_threshold: [] float32 (optional, defaults in this metadata)"
)
OUTPUT_FORMAT: Final = (
    "lines [B, Lmax, 2, 2] ((x1, y1), (x2, y2)) and junctions [B, Kmax, 2] (x, y) in input pixels (S x S frame, "
    "pixel edges at integers), score-descending; scores [B, Lmax], junction_scores [B, Kmax]; line_counts [B] and "
    "junction_counts [B] int64 give the valid rows, the rest is zero padding"
)


def export_metadata(cfg: RootConfig, *, fmt: str, precision: str, opset: int | None = None) -> dict[str, str]:
    """Metadata travelling with an exported model (ONNX ``metadata_props``; TorchScript ``roofmapnet.json``).

    Every value is a string (JSON for structured values): ``roofmapnet.format``, ``roofmapnet.contract_version``,
    ``roofmapnet.version``, ``roofmapnet.config`` (the whole validated config), ``input_size`` ([H, W]),
    ``heatmap_size``, ``mean``, ``stddev``, ``score_threshold``, ``junction_threshold``, ``precision``, ``inputs``,
    ``outputs``, ``input_format``, ``output_format`` and, for ONNX, ``opset``.
    """
    m = cfg.model
    meta = {
        "roofmapnet.format": fmt,
        "roofmapnet.contract_version": str(CONTRACT_VERSION),
        "roofmapnet.version": __version__,
        "roofmapnet.config": json.dumps(cfg.model_dump(mode="json"), sort_keys=True),
        "input_size": json.dumps([m.image_size, m.image_size]),
        "heatmap_size": json.dumps([m.heatmap_size, m.heatmap_size]),
        "mean": json.dumps(list(m.image.mean)),
        "stddev": json.dumps(list(m.image.stddev)),
        "score_threshold": repr(float(m.line_score_thres)),
        "junction_threshold": repr(float(m.eval_junc_thres)),
        "precision": precision,
        "inputs": json.dumps(list(INPUT_NAMES)),
        "outputs": json.dumps(list(OUTPUT_NAMES)),
        "input_format": INPUT_FORMAT,
        "output_format": OUTPUT_FORMAT,
    }
    if opset is not None:
        meta["opset"] = str(opset)
    return meta


@dataclass(frozen=True)
class ExportInfo:
    """What the metadata of an exported model says about it.

    Attributes:
        format: ``roofmapnet-onnx`` or ``roofmapnet-torchscript``.
        contract_version: version of the input/output contract.
        version: roofmapnet version that wrote the file.
        config: the configuration the model was exported with.
        precision: ``fp32`` or ``fp16``.
        metadata: all metadata entries as stored.
    """

    format: str
    contract_version: int
    version: str
    config: RootConfig
    precision: str
    metadata: dict[str, str]

    @property
    def input_size(self) -> tuple[int, int]:
        """(H, W) of the network input."""
        return (self.config.model.image_size, self.config.model.image_size)

    @property
    def heatmap_size(self) -> tuple[int, int]:
        """(h, w) of the heatmaps (the Wireframe coordinate frame)."""
        return (self.config.model.heatmap_size, self.config.model.heatmap_size)

    @property
    def stride(self) -> float:
        """Input pixels per heatmap pixel."""
        return self.config.model.image_size / self.config.model.heatmap_size


def read_metadata(meta: Mapping[str, str], source: str, expected_format: str) -> ExportInfo:
    """Parse and check the metadata written by :func:`export_metadata`.

    Args:
        meta: the stored key → value strings.
        source: the file, for messages.
        expected_format: ``roofmapnet.format`` the file must have.

    Raises:
        CheckpointError: a missing or invalid field (one line naming the file and the field).
    """
    for key in ("roofmapnet.format", "roofmapnet.contract_version", "roofmapnet.config", "precision"):
        if key not in meta:
            raise CheckpointError(f"{source}: metadata field '{key}' is missing (not a roofmap export?)")
    if meta["roofmapnet.format"] != expected_format:
        msg = f"{source}: metadata field 'roofmapnet.format' is {meta['roofmapnet.format']!r}, expected {expected_format!r}"
        raise CheckpointError(msg)
    try:
        contract = int(meta["roofmapnet.contract_version"])
    except ValueError:
        raise CheckpointError(f"{source}: metadata field 'roofmapnet.contract_version' is not an integer") from None
    if contract != CONTRACT_VERSION:
        msg = (
            f"{source}: metadata field 'roofmapnet.contract_version' is {contract}; this roofmapnet reads version "
            f"{CONTRACT_VERSION} (re-export the model with this version)"
        )
        raise CheckpointError(msg)
    try:
        data = json.loads(meta["roofmapnet.config"])
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{source}: metadata field 'roofmapnet.config' is not valid JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{source}: metadata field 'roofmapnet.config' must be a JSON object")
    try:
        cfg = config_from_dict(data, source=f"{source}: roofmapnet.config")
    except ConfigError as exc:
        raise CheckpointError(exc.problems[0] if exc.problems else f"{source}: invalid roofmapnet.config") from None
    if meta["precision"] not in {p.value for p in EXPORT_PRECISIONS}:
        raise CheckpointError(f"{source}: metadata field 'precision' is {meta['precision']!r}, expected fp32 or fp16")
    return ExportInfo(
        format=meta["roofmapnet.format"],
        contract_version=contract,
        version=meta.get("roofmapnet.version", "unknown"),
        config=cfg,
        precision=meta["precision"],
        metadata=dict(meta),
    )


@contextmanager
def ieee_fp32() -> Iterator[None]:
    """Switch TensorFloat-32 off for cuDNN convolutions and CUDA matrix products inside the block (restored after).

    The parity check runs both sides under it, and the TorchScript exporter traces under it: a trace records
    cuDNN's ``allow_tf32`` flag of the moment into every convolution, and an fp32 export must compute in fp32.

    Uses PyTorch's ``fp32_precision`` settings where they exist (2.9+; mixing them with the older ``allow_tf32``
    flags is an error there), else the ``allow_tf32`` flags.  No effect on the CPU.
    """
    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is not None and hasattr(conv, "fp32_precision"):
        settings = [conv, torch.backends.cuda.matmul]
        saved = [obj.fp32_precision for obj in settings]
        try:
            for obj in settings:
                obj.fp32_precision = "ieee"
            yield
        finally:
            for obj, value in zip(settings, saved, strict=True):
                obj.fp32_precision = value
        return
    saved_flags = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    try:
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved_flags


def export_config(cfg: RootConfig, max_junctions: int | None = None) -> RootConfig:
    """The configuration an export is made with: ``cfg``, with ``model.n_dyn_junc`` lowered to ``max_junctions``.

    Bounding the number of junction proposals bounds the candidate lines (``K(K−1)/2``) and so the worst-case
    latency and memory of the exported graph.

    Raises:
        RoofMapError: (exit code 2) ``max_junctions`` is not in [2, ``model.n_dyn_junc``].
    """
    if max_junctions is None:
        return cfg
    limit = cfg.model.n_dyn_junc
    if not 2 <= max_junctions <= limit:
        msg = f"max_junctions {max_junctions}: must be between 2 and model.n_dyn_junc ({limit})"
        raise RoofMapError(msg, exit_code=2, fields="max_junctions")
    data = cfg.model_dump(mode="json")
    data["model"]["n_dyn_junc"] = max_junctions
    return RootConfig.model_validate(data)


def with_config(model: RoofMapNet, cfg: ModelConfig) -> RoofMapNet:
    """A shallow copy of ``model`` that shares its weights but decodes with ``cfg`` (e.g. another ``n_dyn_junc``)."""
    if cfg == model.cfg:
        return model
    clone = copy.copy(model)
    clone.cfg = cfg
    return clone


def line_features(lines: Tensor, cfg: ModelConfig, heatmap_hw: tuple[int, int]) -> Tensor:
    """L-CNN's [L, 8] extra line feature for eval candidates, built without in-place slice writes.

    Same values as :func:`roofmapnet.models.sampler.line_features` without type flags: ``e0/(H, W)`` and
    ``e1/(H, W)`` when ``use_cood``, ``unit(e0 − e1)`` when ``use_slop``, zeros elsewhere (all zeros by default).
    """
    lines = lines.float()
    zeros2 = torch.zeros_like(lines[:, 0])
    scale = torch.tensor(heatmap_hw, dtype=lines.dtype, device=lines.device)
    e0 = lines[:, 0] / scale if cfg.use_cood else zeros2
    e1 = lines[:, 1] / scale if cfg.use_cood else zeros2
    if cfg.use_slop:
        d = lines[:, 0] - lines[:, 1]
        slope = d / d.norm(dim=1, keepdim=True).clamp(min=1e-6)
    else:
        slope = zeros2
    feat = torch.cat([e0, e1, slope, zeros2], dim=1)
    assert feat.shape[1] == FEAT_DIM
    return feat


def _bilinear(flat: Tensor, hw: tuple[int, int], base: Tensor, points: Tensor) -> Tensor:
    """Bilinear samples [L, m, C] of a map flattened to [B·H·W, C] at ``points`` [L, m, 2] (pixel-centre (y, x)).

    Exactly the arithmetic of :func:`roofmapnet.models.loi.loi_sample` (clamped corners, unclamped weights,
    the same summation order), so every sample is bit-identical to the eager one.
    """
    h, w = hw
    m = points.shape[1]
    c = flat.shape[1]
    py, px = points[..., 0], points[..., 1]
    y0 = py.floor().clamp(0, h - 1)
    x0 = px.floor().clamp(0, w - 1)
    y1 = (y0 + 1).clamp(0, h - 1)
    x1 = (x0 + 1).clamp(0, w - 1)
    y0l, y1l, x0l, x1l = (t.to(torch.long) for t in (y0, y1, x0, x1))

    def corner(yy: Tensor, xx: Tensor, weight: Tensor) -> Tensor:
        rows = flat.index_select(0, (base + yy * w + xx).reshape(-1)).reshape(-1, m, c)
        return rows * weight.to(flat.dtype)[..., None]

    out = corner(y0l, x0l, (y1 - py) * (x1 - px))
    out = out + corner(y1l, x0l, (py - y0) * (x1 - px))
    out = out + corner(y0l, x1l, (y1 - py) * (px - x0))
    return out + corner(y1l, x1l, (py - y0) * (px - x0))


def _sort_ascending(key: Tensor) -> Tensor:
    """Indices that sort a 1-D ``key`` ascending, ties in index order (stable), in eager, traced and ONNX code."""
    if torch.onnx.is_in_onnx_export():
        # ONNX TopK orders equal values by index (lower first); torch.sort(stable=True) does not export.
        return torch.topk(key, key.shape[0], largest=False, sorted=True).indices
    return torch.sort(key, stable=True).indices


def _top_ranks(flat: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Top-``k`` values and indices of each row of ``flat`` [B, N], ties by index (lower first)."""
    if torch.onnx.is_in_onnx_export():
        top = torch.topk(flat, k, dim=1, largest=True, sorted=True)
        return top.values, top.indices
    order = torch.sort(flat, dim=1, descending=True, stable=True)
    return order.values[:, :k], order.indices[:, :k]


def _arange(end: Tensor) -> Tensor:
    """``[0, end)`` for a 0-d integer tensor ``end``: recorded as a dynamic ``Range`` by the tracer (``int(end)``
    would freeze the traced value)."""
    return torch.arange(end, device=end.device)  # type: ignore[call-overload]


def _xy_pixels(yx: Tensor, stride: float) -> Tensor:
    """(y, x) heatmap coordinates → (x, y) network-input pixels (last axis swapped, times the stride)."""
    return torch.stack([yx[..., 1], yx[..., 0]], dim=-1) * stride


class ExportPipeline(nn.Module):
    """RoofMapNet inference from raw pixels to padded wireframes (contract in the module docstring).

    Args:
        model: the network; its ``detection`` module (weights) is shared, or copied when ``dtype`` is not float32.
        dtype: compute dtype of the backbone and verifier (float32, or float16 for half-precision exports);
            normalisation, proposals, line geometry, sampling positions and scores stay float32.

    Example::

        pipe = ExportPipeline(model).eval()
        lines, scores, counts, junc, jscores, jcounts = pipe(pixels, torch.tensor(0.1), torch.tensor(0.008))
    """

    mean: Tensor
    std: Tensor
    lambdas: Tensor
    pair_u: Tensor
    pair_v: Tensor

    def __init__(self, model: RoofMapNet, *, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        cfg = model.cfg
        self.cfg = cfg
        self.dtype = dtype
        self.detection = model.detection if dtype == torch.float32 else copy.deepcopy(model.detection).to(dtype)
        self.stride = float(cfg.image_size // cfg.heatmap_size)
        self.heatmap_hw = (cfg.heatmap_size, cfg.heatmap_size)
        #: Padded number of proposal ranks (the constant size of the pair table).
        self.k_ranks = min(cfg.n_dyn_junc, cfg.heatmap_size * cfg.heatmap_size)
        device = next(model.parameters()).device
        self.register_buffer("mean", torch.tensor(cfg.image.mean, dtype=torch.float32, device=device).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(cfg.image.stddev, dtype=torch.float32, device=device).view(1, 3, 1, 1))
        # LoI interpolation weights in float32 whatever the compute dtype (sample positions are never rounded).
        self.register_buffer("lambdas", model.detection.lambda_1.detach().reshape(-1).float().clone(), persistent=False)
        iu, iv = torch.triu_indices(self.k_ranks, self.k_ranks, offset=1, device=device)
        self.register_buffer("pair_u", iu, persistent=False)
        self.register_buffer("pair_v", iv, persistent=False)

    def default_thresholds(self) -> tuple[Tensor, Tensor]:
        """``(score_threshold, junction_threshold)`` of the config as float32 scalars on the model's device."""
        return (
            torch.tensor(self.cfg.line_score_thres, dtype=torch.float32, device=self.mean.device),
            torch.tensor(self.cfg.eval_junc_thres, dtype=torch.float32, device=self.mean.device),
        )

    def _classify(self, feature: Tensor, lmap_prob: Tensor, lines: Tensor, batch_idx: Tensor) -> Tensor:
        """Verifier logits [L] (float32) of ``lines`` [L, 2, 2] of images ``batch_idx`` [L]."""
        det = self.detection
        cfg = self.cfg
        n0, n1 = cfg.n_pts0, cfg.n_pts1
        step = n0 // n1
        x, att = det.attend(feature, lmap_prob)
        bsz, ch, h, w = x.shape
        base = (batch_idx.to(torch.long) * (h * w))[:, None]
        pts = loi_points(lines.to(torch.promote_types(x.dtype, torch.float32)), self.lambdas)
        att_flat = att.permute(0, 2, 3, 1).reshape(bsz * h * w, 1)
        xa = _bilinear(att_flat, (h, w), base, pts)  # [L, n0, 1]
        occ = det.aoam(xa.permute(0, 2, 1))
        dropped = occlusion_mask(occ, n0).reshape(-1, n1, step)
        x_flat = x.permute(0, 2, 3, 1).reshape(bsz * h * w, ch)
        pts_win = pts.reshape(-1, n1, step, 2)
        # MaxPool1d(step) of the occlusion-masked samples, one window position at a time (bounded memory).
        pooled = _bilinear(x_flat, (h, w), base, pts_win[:, :, 0]).masked_fill(dropped[:, :, 0, None], 0)
        for j in range(1, step):
            sample = _bilinear(x_flat, (h, w), base, pts_win[:, :, j]).masked_fill(dropped[:, :, j, None], 0)
            pooled = torch.maximum(pooled, sample)
        xp = pooled.permute(0, 2, 1).reshape(-1, ch * n1)  # channel-major, as MaxPool1d(...).flatten(1)
        feat = line_features(lines, cfg, self.heatmap_hw).to(xp.dtype)
        return det.fc2(torch.cat([xp, feat], dim=1)).squeeze(1).float()

    def forward(
        self, image: Tensor, score_threshold: Tensor, junction_threshold: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Parse a batch of images (see the module docstring for the contract).

        Args:
            image: [B, 3, S, S] RGB pixel values, 0-255, float32.
            score_threshold: [] keep lines with score > this.
            junction_threshold: [] junction proposal threshold.

        Returns:
            ``(lines, scores, line_counts, junctions, junction_scores, junction_counts)``.
        """
        x = ((image.to(torch.float32) - self.mean) / self.std).to(self.dtype)
        out = self.detection.backbone(x, False)
        # Probabilities in float32 from the logits (as autocast does; exact no-ops for a float32 graph).
        heat = nms3x3(torch.softmax(out.qcc[0].float(), dim=1)[:, 1])
        joff = torch.sigmoid(out.joff[0, :, 0].float()) - 0.5
        lmap_prob = torch.sigmoid(out.lmap[0].float()).to(self.dtype)
        bsz, _, w = heat.shape
        k = eval_k(heat, junction_threshold, self.k_ranks)  # type: ignore[arg-type]
        # Proposals: the constant k_ranks best peaks; ranks >= K_b are masked out below.
        score, idx = _top_ranks(heat.flatten(1), self.k_ranks)
        off = joff.flatten(2).gather(2, idx[:, None, :].expand(-1, 2, -1))
        rc = torch.stack([torch.div(idx, w, rounding_mode="floor"), idx % w], dim=-1).to(torch.float32)
        xy = rc + off.transpose(1, 2) + 0.5  # [B, K, 2] (y, x), as topk_proposals
        ranks = torch.arange(self.k_ranks, device=heat.device)
        valid = ranks[None, :] < k[:, None]
        # Candidates: all pairs u < v of valid ranks, image-major then pair order (as eval_pairs).
        ok = valid[:, self.pair_u] & valid[:, self.pair_v]
        b, p = ok.nonzero(as_tuple=True)
        u, v = self.pair_u[p], self.pair_v[p]
        lines = torch.stack([xy[b, u], xy[b, v]], dim=1)
        scores = torch.sigmoid(self._classify(out.feature, lmap_prob, lines, b))
        # Keep, then order by (image, descending score, candidate order) with one stable sort of a float64 key
        # (exact: scores are float32 in [0, 1], image indices small integers).
        kept = (scores > score_threshold).nonzero()[:, 0]
        kb, ks, kl = b[kept], scores[kept], lines[kept]
        order = _sort_ascending(kb.to(torch.float64) * 4.0 - ks.to(torch.float64))
        kb, ks, kl = kb[order], ks[order], kl[order]
        images = torch.arange(bsz, device=heat.device)
        counts = (kb[:, None] == images[None, :]).sum(dim=0)
        start = torch.cumsum(counts, dim=0) - counts
        slots = _arange(counts.max())
        filled = slots[None, :] < counts[:, None]
        src = torch.where(filled, start[:, None] + slots[None, :], torch.zeros_like(slots)[None, :])
        out_scores = torch.where(filled, ks[src], torch.zeros_like(ks[src]))
        out_lines = torch.where(filled[..., None, None], _xy_pixels(kl[src], self.stride), torch.zeros_like(kl[src]))
        jslots = _arange(k.max())
        jfilled = jslots[None, :] < k[:, None]
        jxy = _xy_pixels(xy.index_select(1, jslots), self.stride)
        junctions = torch.where(jfilled[..., None], jxy, torch.zeros_like(jxy))
        jscore = score.index_select(1, jslots)
        junction_scores = torch.where(jfilled, jscore, torch.zeros_like(jscore))
        return out_lines, out_scores, counts, junctions, junction_scores, k
