"""MultitaskLearner: hourglass backbone + heads + the QCCM junction refinement (``detection.backbone.*``).

Attribute names mirror the official checkpoint: ``gaussalpha``, ``gaussbeta``, ``backbone``, ``conv_jmap``,
``latlayer`` (and the parameter-free ``maxpool``).

Memory format: with ``cfg.channels_last`` (the default) the images are converted to channels_last once on entry
and every dense layer after that (hourglass, heads, refinement) reads and writes channels_last tensors; the
per-stack outputs are stacked so that their memory stays channels-last too (:func:`stack_maps`).  No layout
conversion happens inside the dense part (``tests/unit/models/test_memory_format.py`` checks it with the profiler).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from roofmapnet.config.schema import ModelConfig
from roofmapnet.models.hourglass import HourglassNet
from roofmapnet.models.outputs import HeadOutputs

#: Initial values of the dynamic-Gaussian parameters (σ = 2 px at init).
GAUSS_ALPHA_INIT = -0.5
GAUSS_BETA_INIT = 2.0


@functools.lru_cache(maxsize=32)
def _aligned_weights_np(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in] float32 bilinear ``align_corners=True`` interpolation matrix.

    PyTorch's own source-index arithmetic in float32 (``scale = (n_in-1)/(n_out-1)``, ``src = scale·i``, weights
    ``1-λ`` and ``λ`` of rows ``⌊src⌋`` and ``min(⌊src⌋+1, n_in-1)``). Built with numpy so that a traced export
    records it as a constant.
    """
    scale = np.float32(n_in - 1) / np.float32(n_out - 1) if n_out > 1 else np.float32(0.0)
    pos = np.arange(n_out, dtype=np.float32) * scale
    i0 = np.minimum(np.floor(pos).astype(np.int64), n_in - 1)
    lam = (pos - i0.astype(np.float32)).astype(np.float32)
    weights = np.zeros((n_out, n_in), dtype=np.float32)
    rows = np.arange(n_out)
    np.add.at(weights, (rows, i0), np.float32(1.0) - lam)
    np.add.at(weights, (rows, np.minimum(i0 + 1, n_in - 1)), lam)
    return weights


def _aligned_weights(n_in: int, n_out: int, like: Tensor) -> Tensor:
    return torch.from_numpy(_aligned_weights_np(n_in, n_out)).to(device=like.device, dtype=like.dtype)


def upsample_bilinear_aligned(x: Tensor, size: Sequence[int]) -> Tensor:
    """``F.interpolate(x, size, mode="bilinear", align_corners=True)`` as two small matrix products.

    Same values (to rounding) in any memory format, and the result and its gradient keep ``x``'s layout:
    PyTorch's CPU bilinear backward only handles NCHW, so inside a channels_last network it would convert the
    gradient back and forth.  The products run on the NHWC view (free for channels_last), so a channels_last
    ``x`` gives a channels_last result.  While tracing for export it records ``F.interpolate`` itself (ONNX
    ``Resize``; the traced sizes may be tensors and layouts do not exist in an exported graph).
    """
    if torch.jit.is_tracing() or torch.jit.is_scripting():
        return F.interpolate(x, size=size, mode="bilinear", align_corners=True)
    b, c, h, w = x.shape
    out_h, out_w = int(size[0]), int(size[1])
    rows = _aligned_weights(h, out_h, x)  # [out_h, h]
    cols = _aligned_weights(w, out_w, x)  # [out_w, w]
    if x.is_contiguous(memory_format=torch.channels_last):
        nhwc = x.permute(0, 2, 3, 1)  # [B, h, w, C], contiguous
        y = torch.matmul(rows, nhwc.reshape(b, h, w * c)).reshape(b * out_h, w, c)
        return torch.matmul(cols, y).reshape(b, out_h, out_w, c).permute(0, 3, 1, 2)
    y = torch.matmul(rows, x.reshape(b * c, h, w))  # [B·C, out_h, w]
    return torch.matmul(y, cols.t()).reshape(b, c, out_h, out_w)


def stack_maps(maps: list[Tensor]) -> Tensor:
    """``torch.stack(maps)`` [S, B, C, H, W] that keeps channels_last maps channels-last (no layout change).

    ``torch.stack`` of channels_last [B, C, H, W] maps returns a contiguous (NCHW-ordered) result, i.e. a layout
    conversion of every map; stacking their NHWC views instead gives a [S, B, H, W, C] buffer, returned as a
    [S, B, C, H, W] view whose channels are the fastest-moving axis, as in the inputs.
    """
    first = maps[0]
    if torch.jit.is_tracing():  # an exported graph has no layouts: the permutes would become real transposes
        return torch.stack(maps)
    if first.dim() == 4 and not first.is_contiguous() and first.is_contiguous(memory_format=torch.channels_last):
        return torch.stack([m.permute(0, 2, 3, 1) for m in maps]).permute(0, 1, 4, 2, 3)
    return torch.stack(maps)


class MultitaskLearner(nn.Module):
    """Backbone + heads + quadratic coordinate calibration (QCCM) of the junction logits.

    For the junction logits ``g`` of a stack: ``q = conv_jmap(g) + upsample(latlayer(maxpool(g)))`` (bilinear,
    ``align_corners=True``, back to the heatmap size). The refinement convs (and their BatchNorms) are shared
    by all stacks.

    Args:
        cfg: the model section of the configuration.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.gaussalpha = nn.Parameter(torch.tensor([GAUSS_ALPHA_INIT]))
        self.gaussbeta = nn.Parameter(torch.tensor([GAUSS_BETA_INIT]))
        self.backbone = HourglassNet(
            cfg.head_size,
            depth=cfg.depth,
            num_stacks=cfg.num_stacks,
            num_blocks=cfg.num_blocks,
            inplanes=cfg.inplanes,
            num_feats=cfg.num_feats,
        )
        jc = cfg.jmap_channels
        self.conv_jmap = nn.Sequential(
            nn.Conv2d(2, jc, kernel_size=3, padding=1),
            nn.BatchNorm2d(jc),
            nn.ReLU(inplace=True),
            nn.Conv2d(jc, jc, kernel_size=3, padding=1),
            nn.BatchNorm2d(jc),
            nn.ReLU(inplace=True),
            nn.Conv2d(jc, 2, kernel_size=1),
        )
        self.latlayer = nn.Conv2d(2, 2, kernel_size=3, padding=1)
        self.maxpool = nn.MaxPool2d(2, stride=2)
        self.memory_format = torch.contiguous_format
        self.set_memory_format(torch.channels_last if cfg.channels_last else torch.contiguous_format)

    def set_memory_format(self, memory_format: torch.memory_format) -> None:
        """Run the dense part in ``memory_format`` (``torch.channels_last`` or ``torch.contiguous_format``).

        Converts the 4-D weights in place (values, keys and shapes of the state_dict are unchanged) and the input
        images on entry of :meth:`forward`.
        """
        self.memory_format = memory_format
        self.to(memory_format=memory_format)  # type: ignore[call-overload]  # supported, not in the stubs

    def refine(self, jlogits: Tensor) -> Tensor:
        """QCCM: refined 2-class junction logits [B, 2, H, W] from the DGHR logits ``jlogits`` [B, 2, H, W]."""
        lateral = self.latlayer(self.maxpool(jlogits))
        lateral = upsample_bilinear_aligned(lateral, jlogits.shape[-2:])
        return self.conv_jmap(jlogits) + lateral

    def forward(self, images: Tensor, all_stacks: bool | None = None) -> HeadOutputs:
        """Dense predictions of every stack.

        Args:
            images: [B, 3, S_h, S_w] normalised images; both sides multiples of ``4·2**depth``.
            all_stacks: refine every stack (training) or only stack 0 (the reference's "testing" mode). ``None``
                follows ``self.training``.

        Returns:
            :class:`HeadOutputs`; ``qcc`` has ``num_stacks`` entries when ``all_stacks`` else one.
        """
        if all_stacks is None:
            all_stacks = self.training
        outputs, feature = self.backbone(images.contiguous(memory_format=self.memory_format))
        junction, line, offset = (list(branch) for branch in zip(*outputs, strict=True))
        # The reference refines the stacks one by one, final stack first, through shared BatchNorms: keep separate
        # calls (batching the stacks would change the BatchNorm statistics in training).
        refined = [self.refine(j) for j in (junction if all_stacks else junction[:1])]
        return HeadOutputs(
            dghr=stack_maps(junction),
            qcc=stack_maps(refined),
            lmap=stack_maps(line).squeeze(2),
            joff=stack_maps(offset)[:, :, None],
            feature=feature,
        )
