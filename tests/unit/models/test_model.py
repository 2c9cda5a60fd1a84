"""The RoofMapNet network: state-dict parity, forward modes, proposals, sampler labels, LoI/AOAM parity, decoding."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from roofmapnet.config import ModelConfig
from roofmapnet.models import verifier
from roofmapnet.models.loi import loi_sample
from roofmapnet.models.outputs import HeadOutputs, LineSamples
from roofmapnet.models.proposals import (
    Proposals,
    eval_k,
    match_junctions,
    nms3x3,
    topk_proposals,
    train_k,
)
from roofmapnet.models.roofmapnet import RoofMapNet
from roofmapnet.models.sampler import eval_pairs, line_features
from roofmapnet.models.verifier import occlusion_mask
from tests.tiny import TINY_MODEL

MANIFEST = Path(__file__).resolve().parents[2] / "data" / "roofmapnet_state_dict_manifest.json"

TINY = {**TINY_MODEL, "num_stacks": 2, "num_blocks": 1, "n_dyn_posl": 50, "n_dyn_negl": 10, "n_dyn_othr": 30}


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_config(**overrides: object) -> ModelConfig:
    """A tiny model config (fast on CPU)."""
    return ModelConfig(**{**TINY, **overrides})


def tiny_model(seed: int = 0, **overrides: object) -> RoofMapNet:
    """A tiny randomly initialised RoofMapNet."""
    torch.manual_seed(seed)
    return RoofMapNet(tiny_config(**overrides))


# ------------------------------------------------------------------------------------------------ state dict
def test_state_dict_equals_official_manifest() -> None:
    manifest = json.loads(MANIFEST.read_text())
    model = RoofMapNet(ModelConfig())
    sd = model.state_dict()
    got = [(k, list(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in sd.items()]
    want = [(e["key"], e["shape"], e["dtype"]) for e in manifest["entries"]]
    assert len(got) == 756
    assert got == want
    assert sum(p.numel() for p in model.parameters()) == 9_931_319 == manifest["num_parameters"]
    assert sum(b.numel() for b in model.buffers()) == manifest["num_buffers"]
    assert model.cfg == ModelConfig()
    assert torch.equal(sd["detection.lambda_1"][:, 0], torch.linspace(0, 1, 64))
    assert sd["detection.backbone.gaussalpha"].item() == -0.5
    assert sd["detection.backbone.gaussbeta"].item() == 2.0


# ------------------------------------------------------------------------------------------------ forward
def test_forward_shapes_train_eval_and_non_square() -> None:
    model = tiny_model()
    x = torch.randn(2, 3, 64, 80)
    model.train()
    out = model(x)
    assert out.dghr.shape == (2, 2, 2, 16, 20)
    assert out.qcc.shape == (2, 2, 2, 16, 20)
    assert out.lmap.shape == (2, 2, 16, 20)
    assert out.joff.shape == (2, 2, 1, 2, 16, 20)
    assert out.feature.shape == (2, 16, 16, 20)
    assert out.jmap_prob.shape == (2, 16, 20)
    assert out.joff_pred.shape == (2, 2, 16, 20)
    assert bool((out.feature >= 0).all())  # post-ReLU feature
    model.eval()
    with torch.no_grad():
        ev = model(x)
    assert ev.qcc.shape == (1, 2, 2, 16, 20)
    assert ev.dghr.shape == (2, 2, 2, 16, 20)


def test_default_depth_on_a_non_square_320x256_input() -> None:
    model = tiny_model(image_size=256, heatmap_size=64, depth=4, n_dyn_junc=8)
    images = torch.randn(1, 3, 320, 256)
    out = model(images)
    assert out.qcc.shape == (2, 1, 2, 80, 64)
    assert out.feature.shape == (1, 16, 80, 64)
    (wf,) = model.predict(images, [(640, 512)], score_threshold=0.0)
    assert wf.heatmap_size == (80, 64)
    assert len(wf.lines) == 8 * 7 // 2
    torch.testing.assert_close(wf.lines_image, wf.lines.double() * 8.0)


def test_eval_mode_refines_stack0_only_and_matches_full_refinement() -> None:
    model = tiny_model(seed=1).eval()
    calls: list[torch.Tensor] = []
    hook = model.detection.backbone.conv_jmap.register_forward_hook(lambda m, i, o: calls.append(i[0].detach()))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        short = model(x)
        assert len(calls) == 1
        calls.clear()
        full = model(x, all_stacks=True)
        assert len(calls) == 2
    hook.remove()
    # Reference order: the final stack (stack 0) is refined first.
    assert torch.equal(calls[0], full.dghr[0])
    assert torch.equal(calls[1], full.dghr[1])
    assert short.qcc.shape[0] == 1
    assert full.qcc.shape[0] == 2
    torch.testing.assert_close(short.qcc[0], full.qcc[0], rtol=0, atol=0)
    for name in ("dghr", "lmap", "joff", "feature"):
        torch.testing.assert_close(getattr(short, name), getattr(full, name), rtol=0, atol=0)
    assert not torch.equal(full.qcc[0], full.qcc[1])


def test_training_forward_updates_shared_jmap_bn_once_per_stack() -> None:
    model = tiny_model()
    bn = model.detection.backbone.conv_jmap[1]
    model.train()
    model(torch.randn(2, 3, 64, 64))
    assert int(bn.num_batches_tracked) == 2  # two stacks through the shared refinement
    assert int(model.detection.backbone.backbone.bn1.num_batches_tracked) == 1


# ------------------------------------------------------------------------------------------------ proposals
def test_nms_k_rules_topk_decoding_and_matching() -> None:
    heat = torch.zeros(1, 6, 20)
    heat[0, 1, 18] = 0.9  # column 18 > 16: the width is taken from the map
    heat[0, 1, 17] = 0.5  # suppressed by its neighbour
    heat[0, 4, 3] = 0.3
    heat[0, 4, 4] = 0.3  # plateau: both survive
    nms = nms3x3(heat)
    assert nms[0, 1, 17] == 0
    assert nms[0, 1, 18] == pytest.approx(0.9)
    assert nms[0, 4, 3] == pytest.approx(0.3)
    assert nms[0, 4, 4] == pytest.approx(0.3)
    assert eval_k(nms, 0.2, 300).tolist() == [3]
    assert eval_k(nms, 0.2, 2).tolist() == [2]
    assert eval_k(nms, 0.95, 300).tolist() == [2]  # at least 2
    assert train_k(torch.tensor([[True] * 5 + [False] * 3, [False] * 8]), 300).tolist() == [12, 2]
    assert train_k(torch.ones(1, 200, dtype=torch.bool), 300).tolist() == [300]
    joff = torch.zeros(1, 2, 6, 20)
    joff[0, :, 1, 18] = torch.tensor([0.25, -0.25])
    props = topk_proposals(nms, joff, torch.tensor([3]))
    assert props.k_max == 3
    assert props.valid.tolist() == [[True, True, True]]
    torch.testing.assert_close(props.xy[0, 0], torch.tensor([1.75, 18.25]))
    assert sorted(props.xy[0, 1:].tolist()) == [[4.5, 3.5], [4.5, 4.5]]
    assert props.xy.dtype == torch.float32
    assert props.score.dtype == torch.float32

    gt = torch.tensor([[[1.75, 19.75], [4.5, 5.0], [0.0, 0.0]]])
    mask = torch.tensor([[True, True, False]])
    match = match_junctions(props, gt, mask)
    # (1.75, 18.25) is exactly 1.5 from GT 0 (matched, cost = 1.5²); (4.5, 3.5) is 1.5 from GT 1; (4.5, 4.5) is 0.5.
    assert match.tolist() == [[0, 1, 1]]
    far = Proposals(xy=props.xy - torch.tensor([0.0, 0.01]), score=props.score, valid=props.valid, k=props.k)
    far_match = match_junctions(far, gt, mask)[0].tolist()
    assert far_match[0] == 3
    assert sorted(far_match[1:]) == [1, 3]
    invalid = Proposals(xy=props.xy, score=props.score, valid=torch.tensor([[True, True, False]]), k=torch.tensor([2]))
    assert match_junctions(invalid, gt, mask)[0, 2].item() == 3
    assert match_junctions(props, torch.zeros(1, 0, 2), torch.zeros(1, 0, dtype=torch.bool)).tolist() == [[0, 0, 0]]


# ------------------------------------------------------------------------------------------------ sampler
GT_JUNC = [
    [(2.3, 3.7), (2.6, 12.2), (11.4, 12.8), (12.1, 2.9), (7.2, 7.6)],
    [(4.4, 4.4), (9.7, 13.3)],
]
GT_LINES = [[(0, 1), (1, 2), (2, 3), (3, 0), (0, 4)], [(0, 1)]]


def _gt_outputs(hw: tuple[int, int] = (16, 16), channels: int = 16) -> HeadOutputs:
    """Head outputs whose stack-0 junction map and offsets decode exactly to ``GT_JUNC``."""
    b = len(GT_JUNC)
    h, w = hw
    qcc = torch.zeros(1, b, 2, h, w)
    qcc[0, :, 1] = -12.0
    joff = torch.zeros(1, b, 1, 2, h, w)
    for i, juncs in enumerate(GT_JUNC):
        for y, x in juncs:
            r, c = math.floor(y), math.floor(x)
            qcc[0, i, 1, r, c] = 12.0
            for a, v in enumerate((y, x)):
                o = v - math.floor(v) - 0.5
                joff[0, i, 0, a, r, c] = math.log((o + 0.5) / (0.5 - o))
    return HeadOutputs(
        dghr=torch.zeros(1, b, 2, h, w),
        qcc=qcc,
        lmap=torch.zeros(1, b, h, w),
        joff=joff,
        feature=torch.zeros(b, channels, h, w),
    )


def _gt_batch(with_static: bool = True) -> dict[str, object]:
    b = len(GT_JUNC)
    n = max(len(j) for j in GT_JUNC)
    junc = torch.zeros(b, n, 2)
    mask = torch.zeros(b, n, dtype=torch.bool)
    lpos = torch.zeros(b, n + 1, n + 1, dtype=torch.bool)
    lneg = torch.zeros(b, n + 1, n + 1, dtype=torch.bool)
    for i, (juncs, lines) in enumerate(zip(GT_JUNC, GT_LINES, strict=True)):
        junc[i, : len(juncs)] = torch.tensor(juncs)
        mask[i, : len(juncs)] = True
        for u, v in lines:
            lpos[i, u, v] = lpos[i, v, u] = True
    lneg[0, 0, 2] = lneg[0, 2, 0] = True
    batch: dict[str, object] = {"junc": junc, "junc_mask": mask, "Lpos": lpos, "Lneg": lneg}
    if with_static:
        batch["lpre"] = torch.tensor(
            [[[[1.0, 1.0], [5.0, 5.0]], [[2.0, 3.0], [9.0, 9.0]]], [[[3.0, 3.0], [4.0, 8.0]], [[0.0, 0.0], [0, 0]]]]
        )
        batch["lpre_label"] = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
        batch["lpre_mask"] = torch.tensor([[True, True], [True, False]])
    return batch


def _oracle_label(image: int, line: torch.Tensor) -> float:
    """1 iff both endpoints lie within 1.5 of the GT junctions of a GT line (nearest-junction rule)."""
    gt = torch.tensor(GT_JUNC[image])
    idx = []
    for end in line:
        d = ((gt - end) ** 2).sum(1)
        j = int(d.argmin())
        if float(d[j]) > 1.5**2:
            return 0.0
        idx.append(j)
    pairs = {frozenset(p) for p in GT_LINES[image]}
    return float(frozenset(idx) in pairs and idx[0] != idx[1])


def test_sample_lines_positive_labels_are_exactly_gt_lines() -> None:
    model = tiny_model(n_dyn_posl=100, n_dyn_negl=10, n_dyn_othr=40)
    out = _gt_outputs()
    batch = _gt_batch(with_static=False)
    torch.manual_seed(3)
    samples = model.sample_lines(out, batch)
    assert samples.lines.dtype == torch.float32
    assert samples.feat.shape == (len(samples), 8)
    assert torch.equal(samples.feat, torch.zeros_like(samples.feat))  # official config: use_cood = use_slop = 0
    assert torch.equal(samples.batch_idx, torch.sort(samples.batch_idx).values)
    for image in range(2):
        sel = samples.batch_idx == image
        lines, labels = samples.lines[sel], samples.labels[sel]
        oracle = torch.tensor([_oracle_label(image, li) for li in lines])
        assert torch.equal(labels, oracle)
        # Every GT line is sampled as a positive, in both orientations, at the exact decoded GT coordinates.
        pos = lines[labels == 1]
        gt = torch.tensor(GT_JUNC[image])
        for u, v in GT_LINES[image]:
            for a, b in ((u, v), (v, u)):
                want = torch.stack([gt[a], gt[b]])
                assert bool(((pos - want).abs().amax(dim=(1, 2)) < 1e-4).any()), (image, a, b)
        assert not bool((lines[:, 0] == lines[:, 1]).all(dim=1).any())  # no u == v
    # The hard negative (0, 2) of image 0 is sampled (n_dyn_negl ≥ 1).
    gt0 = torch.tensor(GT_JUNC[0])
    img0 = samples.lines[samples.batch_idx == 0]
    assert bool(((img0 - torch.stack([gt0[0], gt0[2]])).abs().amax(dim=(1, 2)) < 1e-4).any())


def test_sample_lines_appends_static_lines_and_is_deterministic() -> None:
    model = tiny_model(n_dyn_othr=5)
    out = _gt_outputs()
    batch = _gt_batch()
    torch.manual_seed(0)
    a = model.sample_lines(out, batch)
    torch.manual_seed(0)
    b = model.sample_lines(out, batch)
    assert torch.equal(a.lines, b.lines)
    assert torch.equal(a.labels, b.labels)
    lpre, lab, mask = batch["lpre"], batch["lpre_label"], batch["lpre_mask"]
    for image in range(2):
        sel = a.batch_idx == image
        m = int(mask[image].sum())  # type: ignore[index]
        assert torch.equal(a.lines[sel][-m:], lpre[image][mask[image]])  # type: ignore[index]
        assert torch.equal(a.labels[sel][-m:], lab[image][mask[image]])  # type: ignore[index]


def test_sample_lines_with_zero_gt_junctions() -> None:
    model = tiny_model()
    out = _gt_outputs()
    empty = {
        "junc": torch.zeros(2, 0, 2),
        "junc_mask": torch.zeros(2, 0, dtype=torch.bool),
        "Lpos": torch.zeros(2, 1, 1, dtype=torch.bool),
        "Lneg": torch.zeros(2, 1, 1, dtype=torch.bool),
    }
    samples = model.sample_lines(out, empty)
    assert len(samples) > 0
    assert float(samples.labels.sum()) == 0.0
    # K = 2 per image: only the two orderings of the pair of proposals can be drawn.
    assert torch.bincount(samples.batch_idx, minlength=2).tolist() <= [2, 2]
    # Mixed batch: image 1 has no GT junction, image 0 has some.
    batch = _gt_batch(with_static=False)
    batch["junc_mask"][1] = False  # type: ignore[index]
    batch["Lpos"][1] = False  # type: ignore[index]
    mixed = model.sample_lines(out, batch)
    assert float(mixed.labels[mixed.batch_idx == 1].sum()) == 0.0
    assert float(mixed.labels[mixed.batch_idx == 0].sum()) >= 2 * len(GT_LINES[0])


def test_all_pairs_sampler_and_cap() -> None:
    out = _gt_outputs()
    batch = _gt_batch()
    model = tiny_model(sampler="all_pairs", all_pairs_cap=20000)
    samples = model.sample_lines(out, batch)
    # K = min(2N + 2, 20) = 12 and 6: all u < v pairs, no static lines.
    assert torch.bincount(samples.batch_idx).tolist() == [66, 15]
    assert float(samples.labels.sum()) == len(GT_LINES[0]) + len(GT_LINES[1])
    capped = tiny_model(sampler="all_pairs", all_pairs_cap=10).sample_lines(out, batch)
    assert torch.bincount(capped.batch_idx).tolist() == [10, 10]


def test_line_features_columns() -> None:
    lines = torch.tensor([[[4.0, 8.0], [4.0, 4.0]]])
    cfg = tiny_config(use_cood=True, use_slop=True)
    feat = line_features(lines, (16, 32), cfg, torch.tensor([False]), torch.tensor([True]))
    torch.testing.assert_close(feat, torch.tensor([[0.25, 0.25, 0.25, 0.125, 0.0, 1.0, 0.0, 1.0]]))
    assert torch.equal(line_features(lines, (16, 32), tiny_config()), torch.zeros(1, 8))


# ------------------------------------------------------------------------------------------------ LoI + AOAM
def _literal_loi(fmap: torch.Tensor, lines: torch.Tensor, bidx: torch.Tensor, n: int) -> torch.Tensor:
    """The reference's bilinear LoI sampling written out point by point."""
    _, c, h, w = fmap.shape
    out = torch.zeros(lines.shape[0], c, n, dtype=fmap.dtype)
    for li in range(lines.shape[0]):
        (y0e, x0e), (y1e, x1e) = lines[li].tolist()
        f = fmap[int(bidx[li])]
        for k in range(n):
            lam = k / (n - 1)
            py = lam * y0e + (1 - lam) * y1e - 0.5
            px = lam * x0e + (1 - lam) * x1e - 0.5
            ya = min(max(math.floor(py), 0), h - 1)
            xa = min(max(math.floor(px), 0), w - 1)
            yb = min(max(ya + 1, 0), h - 1)
            xb = min(max(xa + 1, 0), w - 1)
            out[li, :, k] = (
                f[:, ya, xa] * (yb - py) * (xb - px)
                + f[:, yb, xa] * (py - ya) * (xb - px)
                + f[:, ya, xb] * (yb - py) * (px - xa)
                + f[:, yb, xb] * (py - ya) * (px - xa)
            )
    return out


def test_loi_sample_equals_literal_bilinear_loop_with_border_behaviour() -> None:
    g = torch.Generator().manual_seed(0)
    fmap = torch.randn(2, 3, 7, 9, generator=g, dtype=torch.float64)
    lines = torch.cat(
        [
            torch.rand(6, 2, 2, generator=g, dtype=torch.float64) * torch.tensor([7.0, 9.0], dtype=torch.float64),
            torch.tensor(
                [
                    [[0.1, 0.2], [3.0, 4.0]],  # reaches negative coordinates (extrapolation)
                    [[6.7, 1.0], [6.9, 8.0]],  # last row
                    [[2.0, 8.6], [5.0, 8.95]],  # last column
                ],
                dtype=torch.float64,
            ),
        ]
    )
    bidx = torch.tensor([0, 1, 0, 1, 1, 0, 1, 0, 1])
    lam = torch.linspace(0, 1, 5, dtype=torch.float64)
    got = loi_sample(fmap, lines, bidx, lam)
    torch.testing.assert_close(got, _literal_loi(fmap, lines, bidx, 5), rtol=0, atol=1e-12)
    # Borders on a linear map f = 2y + 3x + 1: left/top extrapolate exactly, last row/column give 0.
    yy, xx = torch.meshgrid(torch.arange(7.0), torch.arange(9.0), indexing="ij")
    lin = (2 * yy + 3 * xx + 1)[None, None].double()
    probe = torch.tensor([[[0.1, 4.5], [0.1, 4.5]], [[6.9, 4.5], [6.9, 4.5]], [[3.5, 8.7], [3.5, 8.7]]]).double()
    vals = loi_sample(lin, probe, torch.zeros(3, dtype=torch.long), lam)[:, 0, 0]
    torch.testing.assert_close(vals, torch.tensor([2 * -0.4 + 3 * 4.0 + 1, 0.0, 0.0], dtype=torch.float64))


def test_loi_sample_bf16_keeps_float32_positions() -> None:
    fmap = torch.arange(16 * 16, dtype=torch.float32).reshape(1, 1, 16, 16)
    lines = torch.tensor([[[10.3, 12.7], [10.3, 12.7]]])
    ref = loi_sample(fmap, lines, torch.zeros(1, dtype=torch.long), torch.linspace(0, 1, 4))
    low = loi_sample(fmap.bfloat16(), lines, torch.zeros(1, dtype=torch.long), torch.linspace(0, 1, 4))
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), ref, rtol=1e-2, atol=0)  # bf16 rounding of values only


def test_occlusion_mask_and_classifier_equal_per_line_loop() -> None:
    n = 16
    occ = torch.tensor([[0.1, 0.5], [0.0, 1.0], [0.7, 0.2], [0.3, 0.3], [0.5, 0.5625], [0.99, 0.999]])
    mask = occlusion_mask(occ, n)
    xp = torch.randn(len(occ), 3, n)
    ref = xp.clone()
    for li in range(len(occ)):
        f, b = math.ceil(n * float(occ[li, 0])), math.ceil(n * float(occ[li, 1]))
        ref[li, :, f:b] = 0
    assert torch.equal(xp.masked_fill(mask[:, None, :], 0), ref)
    assert mask[0].nonzero().flatten().tolist() == list(range(2, 8))
    assert not bool(mask[2].any())
    assert not bool(mask[3].any())

    # The whole classifier with a forced AOAM output equals the reference's loop-based computation.
    model = tiny_model().eval()
    det = model.detection
    feature = torch.rand(2, 16, 16, 16)
    lmap = torch.rand(2, 16, 16)
    lines = torch.rand(len(occ), 2, 2) * 16
    samples = LineSamples(
        lines=lines, batch_idx=torch.tensor([0, 1, 0, 1, 1, 0]), labels=torch.zeros(6), feat=torch.zeros(6, 8)
    )
    det.aoam = lambda xa: occ  # type: ignore[method-assign]
    with torch.no_grad():
        logits, got_occ = model.verify(feature, lmap, samples)
        x = det.fc1(feature)
        x = x * lmap[:, None] + x
        xp = _literal_loi(x, lines, samples.batch_idx, n)
        for li in range(len(occ)):
            f, b = math.ceil(n * float(occ[li, 0])), math.ceil(n * float(occ[li, 1]))
            xp[li, :, f:b] = 0
        pooled = F.max_pool1d(xp, 4, 4).reshape(len(occ), -1)
        want = det.fc2(torch.cat([pooled, samples.feat], 1))[:, 0]
    assert torch.equal(got_occ, occ)
    torch.testing.assert_close(logits, want, rtol=1e-5, atol=1e-5)


def test_line_blocks_do_not_change_verification(monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny_model(seed=4)
    torch.manual_seed(1)
    feature, lmap = torch.rand(2, 16, 16, 16), torch.rand(2, 16, 16)
    samples = LineSamples(torch.rand(11, 2, 2) * 16, torch.randint(0, 2, (11,)), torch.zeros(11), torch.zeros(11, 8))
    results = {}
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    for name, values in (("whole", verifier.LOI_BLOCK_VALUES), ("blocks", 8 * 16 * 3)):
        monkeypatch.setattr(verifier, "LOI_BLOCK_VALUES", values)
        assert model.detection.block_lines(8) == (3 if name == "blocks" else 32768)
        for mode in (True, False):
            model.load_state_dict(initial)  # undo the BatchNorm running-statistics updates of train mode
            model.train(mode)
            with torch.no_grad():
                results[name, mode] = model.verify(feature, lmap, samples)
    for mode in (True, False):
        for got, want in zip(results["blocks", mode], results["whole", mode], strict=True):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_verify_empty_single_and_gradients() -> None:
    model = tiny_model().train()
    out = model(torch.randn(2, 3, 64, 64))
    empty = LineSamples(torch.zeros(0, 2, 2), torch.zeros(0, dtype=torch.long), torch.zeros(0), torch.zeros(0, 8))
    logits, occ = model.verify(out.feature, out.lmap_prob, empty)
    assert logits.shape == (0,)
    assert occ.shape == (0, 2)
    (logits.sum() + occ.sum()).backward()
    assert model.detection.fc2[0].weight.grad is not None
    assert float(model.detection.fc2[0].weight.grad.abs().sum()) == 0.0
    model.zero_grad(set_to_none=True)

    out = model(torch.randn(2, 3, 64, 64))
    one = LineSamples(torch.tensor([[[1.0, 2.0], [9.0, 12.0]]]), torch.tensor([1]), torch.ones(1), torch.zeros(1, 8))
    logits, occ = model.verify(out.feature, out.lmap_prob, one)  # BN1d in train mode with L = 1
    assert logits.shape == (1,)
    assert occ.shape == (1, 2)
    assert bool(((occ > 0) & (occ < 1)).all())
    logits.sum().backward(retain_graph=True)
    det = model.detection
    assert det.conv1_line.weight.grad is None  # ceil cuts the graph: the logits never train the AOAM
    assert float(det.fc1.weight.grad.abs().sum()) > 0
    assert float(det.backbone.backbone.conv1.weight.grad.abs().sum()) > 0
    occ.sum().backward()
    assert float(det.conv1_line.weight.grad.abs().sum()) > 0


# ------------------------------------------------------------------------------------------------ predict
def test_predict_maps_lines_to_the_original_640x480_frame() -> None:
    model = tiny_model()
    torch.manual_seed(5)
    original = torch.rand(1, 3, 480, 640)
    images = F.interpolate(original, size=(64, 64), mode="bilinear", align_corners=False)
    assert model.training
    (wf,) = model.predict(images, [(480, 640)], score_threshold=0.0)
    assert model.training  # mode restored
    assert wf.heatmap_size == (16, 16)
    assert wf.image_size == (480, 640)
    assert len(wf.lines) > 0
    assert wf.lines.dtype == torch.float32
    scale = torch.tensor([480 / 16, 640 / 16], dtype=torch.float64)
    torch.testing.assert_close(wf.lines_image, wf.lines.double() * scale)
    torch.testing.assert_close(wf.junctions_image, wf.junctions.double() * scale)
    xyxy = wf.lines_xyxy()
    torch.testing.assert_close(torch.from_numpy(xyxy[:, 0]), wf.lines_image[:, 0, 1])
    torch.testing.assert_close(torch.from_numpy(xyxy[:, 3]), wf.lines_image[:, 1, 0])
    assert bool((wf.scores[:-1] >= wf.scores[1:]).all())
    # Eval K rule: K = clamp(#(NMS > thr), 2, n_dyn_junc); all pairs verified.
    (default,) = model.predict(images)
    assert default.image_size == (64, 64)
    k = len(default.junctions)
    assert 2 <= k <= 20
    assert len(wf.lines) == k * (k - 1) // 2  # threshold 0 keeps every pair


def test_predict_batch_of_two_equals_single_images_and_chunking_is_invariant() -> None:
    model = tiny_model(seed=2)
    torch.manual_seed(6)
    images = torch.randn(2, 3, 64, 64)
    both = model.predict(images, score_threshold=0.0)
    assert len(both) == 2
    singles = [model.predict(images[i : i + 1], score_threshold=0.0)[0] for i in range(2)]
    for a, b in zip(both, singles, strict=True):
        assert a.lines.shape == b.lines.shape
        torch.testing.assert_close(a.scores, b.scores, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(a.junctions, b.junctions, rtol=1e-4, atol=1e-5)
    chunked = RoofMapNet(tiny_config(verifier_chunk=7))
    chunked.load_state_dict(model.state_dict())
    small = chunked.predict(images, score_threshold=0.0)
    for a, b in zip(both, small, strict=True):
        # Same lines and scores; the order of near-tied scores may differ (different matmul blocking).
        assert a.lines.shape == b.lines.shape
        dist, idx = torch.cdist(
            a.lines.flatten(1), b.lines.flatten(1), compute_mode="donot_use_mm_for_euclid_dist"
        ).min(1)
        assert float(dist.max()) < 1e-5
        assert len(set(idx.tolist())) == len(idx)
        torch.testing.assert_close(a.scores, b.scores[idx], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(a.scores, b.scores, rtol=1e-5, atol=1e-6)
    few = model.predict(images, score_threshold=0.0, max_lines=3)
    assert [len(w.lines) for w in few] == [3, 3]
    torch.testing.assert_close(few[0].scores, both[0].scores[:3])


def test_predict_nothing_above_thresholds_gives_valid_empty_result() -> None:
    model = tiny_model()
    (wf,) = model.predict(torch.randn(1, 3, 64, 64), junction_threshold=1.0, score_threshold=1.0)
    assert wf.lines.shape == (0, 2, 2)
    assert wf.scores.shape == (0,)
    assert wf.junctions.shape == (2, 2)  # K ≥ 2 even with no junction above the threshold
    assert wf.lines_xyxy().shape == (0, 4)


def test_eval_pairs_rank_order() -> None:
    xy = torch.arange(8.0).reshape(1, 4, 2)
    props = Proposals(
        xy=xy, score=torch.ones(1, 4), valid=torch.tensor([[True, True, True, False]]), k=torch.tensor([3])
    )
    samples = eval_pairs(props, tiny_config(), (16, 16))
    want = torch.stack([torch.stack([xy[0, u], xy[0, v]]) for u, v in ((0, 1), (0, 2), (1, 2))])
    assert torch.equal(samples.lines, want)
    assert samples.batch_idx.tolist() == [0, 0, 0]
    assert samples.labels.numel() == 0


def test_bf16_autocast_training_step_and_predict() -> None:
    model = tiny_model()
    images = torch.randn(2, 3, 64, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(images)
        samples = model.sample_lines(out, _gt_batch())
        logits, occ = model.verify(out.feature, out.lmap_prob, samples)
        assert logits.dtype == torch.float32
        assert occ.dtype == torch.float32
        (logits.float().mean() + occ.mean()).backward()
        wfs = model.predict(images, score_threshold=0.0)
    assert samples.lines.dtype == torch.float32
    assert len(wfs) == 2
    for wf in wfs:
        assert wf.lines.dtype == torch.float32
        assert wf.scores.dtype == torch.float32
        assert len(wf.lines) > 0
        assert bool(torch.isfinite(wf.lines).all())
    assert float(model.detection.fc2[0].weight.grad.abs().sum()) > 0
