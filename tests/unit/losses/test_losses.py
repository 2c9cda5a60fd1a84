"""The six-term loss and its targets, each checked against a literal (loop) reference computation."""

from __future__ import annotations

import math
from typing import Literal

import pytest
import torch
from torch import Tensor

from roofmapnet.config import RootConfig
from roofmapnet.errors import DataError
from roofmapnet.losses import (
    TERMS,
    RoofMapNetLoss,
    dynamic_gaussian_target,
    gauss_loss,
    lhr_loss,
    line_verification_loss,
    longest_runs,
    occluded_spans,
    offset_loss,
    qcc_loss,
    segmentation_factor_loss,
    segmentation_factor_targets,
    span_targets,
)
from roofmapnet.models.loi import loi_sample
from roofmapnet.models.outputs import HeadOutputs, LineSamples

# --------------------------------------------------------------------------------------------------- helpers


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _random_jmap(b: int, h: int, w: int, n: int, g: torch.Generator) -> Tensor:
    """[b, h, w] binary map with ``n`` junction pixels per image (random positions)."""
    jmap = torch.zeros(b, h * w)
    for i in range(b):
        jmap[i, torch.randperm(h * w, generator=g)[:n]] = 1.0
    return jmap.reshape(b, h, w)


def _loop_gaussian(jmap: Tensor, alpha: float, beta: float) -> Tensor:
    """The reference's per-junction loop (ARCHITECTURE.md §2.3), in float64."""
    b, h, w = jmap.shape
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    out = torch.zeros(b, h, w, dtype=torch.float64)
    for i in range(b):
        g = jmap[i].double().clone()
        for qy, qx in (jmap[i] == 1).nonzero().tolist():
            g += torch.exp(alpha * ((yy - qy) ** 2 + (xx - qx) ** 2) / beta**2)
        out[i] = torch.where(g <= 0.05, torch.zeros_like(g), g.clamp(max=1.0))
    return out


def _loop_longest_run(pred: list[float], gt: list[float], min_span: int, max_span: int) -> tuple[int, int]:
    """Per-line reference of the occluded span: the first longest run of (pred < 0.5 and gt >= 0.5)."""
    best_i, best_len, k, n = 0, 0, 0, len(pred)
    while k < n:
        if pred[k] < 0.5 and gt[k] >= 0.5:
            start = k
            while k < n and pred[k] < 0.5 and gt[k] >= 0.5:
                k += 1
            if k - start > best_len:  # strictly longer: ties keep the first run
                best_i, best_len = start, k - start
        else:
            k += 1
    if min_span <= best_len <= max_span:
        return best_i, best_i + best_len
    return 0, 0


def _outputs(s: int, b: int, h: int, w: int, g: torch.Generator, *, grad: bool = False) -> HeadOutputs:
    def r(*shape: int) -> Tensor:
        return (torch.randn(*shape, generator=g) * 2.0).requires_grad_(grad)

    return HeadOutputs(
        dghr=r(s, b, 2, h, w), qcc=r(s, b, 2, h, w), lmap=r(s, b, h, w), joff=r(s, b, 1, 2, h, w), feature=r(b, 4, h, w)
    )


def _batch(b: int, h: int, w: int, g: torch.Generator, n_junc: int = 5) -> dict[str, Tensor]:
    jmap = _random_jmap(b, h, w, n_junc, g)[:, None]
    joff = (torch.rand(b, 1, 2, h, w, generator=g) - 0.5) * jmap[:, :, None]
    return {"jmap": jmap, "joff": joff, "lmap": torch.rand(b, h, w, generator=g)}


def _samples(b: int, h: int, w: int, n: int, g: torch.Generator) -> LineSamples:
    lines = torch.rand(n, 2, 2, generator=g) * torch.tensor([h, w], dtype=torch.float32)
    return LineSamples(
        lines=lines,
        batch_idx=torch.randint(0, b, (n,), generator=g),
        labels=(torch.rand(n, generator=g) < 0.4).float(),
        feat=torch.zeros(n, 8),
    )


def _cfg(n_pts0: int = 64, **loss: object) -> RootConfig:
    model = {"image_size": 64, "heatmap_size": 16, "depth": 2, "n_pts0": n_pts0, "n_pts1": n_pts0 // 8}
    return RootConfig.model_validate({"model": model, "loss": loss})


# --------------------------------------------------------------------------------------------------- Gaussian


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(("h", "w", "alpha", "beta"), [(16, 16, -0.5, 2.0), (12, 20, -0.7, 1.6), (9, 5, -0.3, 2.5)])
def test_gaussian_target_equals_per_junction_loop(
    h: int, w: int, alpha: float, beta: float, dtype: torch.dtype
) -> None:
    jmap = _random_jmap(3, h, w, 6, _gen(h * w))
    jmap[1] = 0.0  # one image without junctions
    ref = _loop_gaussian(jmap, alpha, beta)
    got = dynamic_gaussian_target(jmap.to(dtype), torch.tensor([alpha]), torch.tensor([beta]))
    assert got.dtype == dtype
    assert got.shape == (3, h, w)
    torch.testing.assert_close(got.double(), ref, atol=1e-6, rtol=0)
    assert ref[0].gt(0).sum() > 6  # the Gaussians are really spread


def test_gaussian_target_properties_and_type_axis() -> None:
    jmap = torch.zeros(1, 1, 15, 22)
    jmap[0, 0, 7, 10] = 1.0
    t = dynamic_gaussian_target(jmap, torch.tensor([-0.5]), torch.tensor([2.0]))
    assert t.shape == (1, 1, 15, 22)
    assert t[0, 0, 7, 10] == 1.0  # centre = J + 1 clamped
    nz = t[t > 0]
    assert nz.min() > 0.05
    assert t.max() == 1.0
    # radius at init: d² = 20 survives (exp(-2.5)), d² = 24 and 25 do not (exp(-3) < 0.05)
    assert t[0, 0, 7 + 4, 10 + 2].item() == pytest.approx(math.exp(-2.5), abs=1e-7)
    assert t[0, 0, 7 + 4, 10 + 3] == 0
    assert t[0, 0, 7 + 5, 10] == 0
    assert t[0, 0, 7, 11].item() == pytest.approx(math.exp(-1 / 8), abs=1e-7)
    # overlapping Gaussians clamp to 1 off-centre; an empty map gives zeros
    two = torch.zeros(1, 8, 8)
    two[0, 3, 3] = two[0, 3, 5] = 1.0
    t2 = dynamic_gaussian_target(two, -0.5, 2.0)
    assert t2[0, 3, 4] == 1.0
    assert two[0, 3, 4] == 0
    assert dynamic_gaussian_target(torch.zeros(2, 5, 7), -0.5, 2.0).abs().sum() == 0


def test_gaussian_target_gradient_only_when_learnable() -> None:
    jmap = _random_jmap(2, 10, 12, 4, _gen(1))
    alpha = torch.nn.Parameter(torch.tensor([-0.5]))
    beta = torch.nn.Parameter(torch.tensor([2.0]))
    assert not dynamic_gaussian_target(jmap, alpha, beta).requires_grad
    t = dynamic_gaussian_target(jmap, alpha, beta, learnable=True)
    assert t.requires_grad
    t.sum().backward()
    assert alpha.grad is not None
    assert alpha.grad.abs().item() > 0
    assert beta.grad is not None
    assert beta.grad.abs().item() > 0


# --------------------------------------------------------------------------------------------------- L_gauss


def test_focal_loss_hand_checked() -> None:
    # One stack, one image, 1×2 map: pixel 0 a junction with p = 0.75, pixel 1 a negative with t = 0.5, p = 0.5.
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]]).reshape(1, 1, 2, 1, 2)
    target = torch.tensor([[[1.0, 0.5]]])
    positive = torch.tensor([[[True, False]]])
    expected = -(0.25**2 * math.log(0.75) + 0.5**4 * 0.5**2 * math.log(0.5))
    assert gauss_loss(logits, target, positive).item() == pytest.approx(expected, rel=1e-6)
    # README literal form: p_t = 0.75 and 0.5·0.5 + 0.5·0.5 = 0.5; weight α = 2, exponent γ = 4.
    readme = -(2 * 0.25**4 * math.log(0.75) + 2 * 0.5**4 * math.log(0.5))
    assert gauss_loss(logits, target, positive, form="readme").item() == pytest.approx(readme, rel=1e-6)
    # Other exponents are honoured.
    other = -(0.25**3 * math.log(0.75) + 0.5**2 * 0.5**3 * math.log(0.5))
    assert gauss_loss(logits, target, positive, alpha=3.0, gamma=2.0).item() == pytest.approx(other, rel=1e-6)


def test_focal_loss_equals_literal_sum_per_image_and_stack() -> None:
    g = _gen(2)
    s, b, h, w = 2, 3, 4, 5
    logits = torch.randn(s, b, 2, h, w, generator=g) * 3
    jmap = _random_jmap(b, h, w, 2, g)
    jmap[2] = 0.0
    target = dynamic_gaussian_target(jmap, -0.5, 2.0)
    got = gauss_loss(logits, target, jmap > 0.5)
    total = 0.0
    for si in range(s):
        for bi in range(b):
            acc, npos = 0.0, 0
            for y in range(h):
                for x in range(w):
                    z0, z1 = logits[si, bi, 0, y, x].item(), logits[si, bi, 1, y, x].item()
                    p = math.exp(z1) / (math.exp(z0) + math.exp(z1))
                    if jmap[bi, y, x] == 1:
                        acc += (1 - p) ** 2 * math.log(p)
                        npos += 1
                    else:
                        acc += (1 - target[bi, y, x].item()) ** 4 * p**2 * math.log(1 - p)
            total += -acc / max(npos, 1)
    assert got.item() == pytest.approx(total / (s * b), rel=1e-5)


def test_focal_loss_is_finite_for_extreme_logits() -> None:
    logits = torch.tensor([[200.0, -200.0], [-200.0, 200.0]]).reshape(1, 1, 2, 1, 2).requires_grad_(True)
    target = torch.tensor([[[1.0, 0.0]]])
    positive = torch.tensor([[[True, False]]])
    forms: tuple[Literal["cornernet", "readme"], ...] = ("cornernet", "readme")
    for form in forms:
        loss = gauss_loss(logits, target, positive, form=form)
        loss.backward()
        assert torch.isfinite(loss)
        assert loss.item() > 100
        assert logits.grad is not None
        assert torch.isfinite(logits.grad).all()
        logits.grad = None


# --------------------------------------------------------------------------------------------------- heatmap terms


def test_qcc_lhr_off_equal_literal_references() -> None:
    g = _gen(3)
    s, b, h, w = 2, 2, 3, 4
    out = _outputs(s, b, h, w, g)
    batch = _batch(b, h, w, g, n_junc=3)
    jmap, joff, lmap = batch["jmap"], batch["joff"], batch["lmap"]
    qcc_ref, lhr_ref, off_ref = 0.0, 0.0, 0.0
    for si in range(s):
        for bi in range(b):
            sq, nj = 0.0, 0
            for y in range(h):
                for x in range(w):
                    z0, z1 = out.qcc[si, bi, 0, y, x].item(), out.qcc[si, bi, 1, y, x].item()
                    p1 = math.exp(z1) / (math.exp(z0) + math.exp(z1))
                    qcc_ref -= math.log(p1) if jmap[bi, 0, y, x] == 1 else math.log(1 - p1)
                    sig = 1 / (1 + math.exp(-out.lmap[si, bi, y, x].item()))
                    t = lmap[bi, y, x].item()
                    lhr_ref -= t * math.log(sig) + (1 - t) * math.log(1 - sig)
                    if jmap[bi, 0, y, x] == 1:
                        nj += 1
                        for c in range(2):
                            pred = 1 / (1 + math.exp(-out.joff[si, bi, 0, c, y, x].item())) - 0.5
                            sq += (pred - joff[bi, 0, c, y, x].item()) ** 2
            off_ref += sq / max(nj, 1)
    n_pix = s * b * h * w
    assert qcc_loss(out.qcc, jmap[:, 0]).item() == pytest.approx(qcc_ref / n_pix, rel=1e-5)
    assert lhr_loss(out.lmap, lmap).item() == pytest.approx(lhr_ref / n_pix, rel=1e-5)
    assert offset_loss(out.joff, joff, jmap).item() == pytest.approx(off_ref / (s * b), rel=1e-5)


def test_offset_loss_zero_with_graph_without_junctions() -> None:
    logits = torch.randn(2, 1, 1, 2, 6, 6, requires_grad=True)
    loss = offset_loss(logits, torch.zeros(1, 1, 2, 6, 6), torch.zeros(1, 1, 6, 6))
    assert loss.item() == 0.0
    assert loss.requires_grad
    loss.backward()
    assert logits.grad is not None
    assert logits.grad.abs().sum() == 0


# --------------------------------------------------------------------------------------------------- L_lv


def _loop_lv(logits: Tensor, labels: Tensor, batch_idx: Tensor, b: int) -> float:
    per_image = []
    for bi in range(b):
        pos, neg, npos, nneg = 0.0, 0.0, 0, 0
        for x, y, i in zip(logits.tolist(), labels.tolist(), batch_idx.tolist(), strict=True):
            if i != bi:
                continue
            sig = 1 / (1 + math.exp(-x))
            if y == 1:
                pos, npos = pos - math.log(sig), npos + 1
            else:
                neg, nneg = neg - math.log(1 - sig), nneg + 1
        if npos + nneg:
            per_image.append(0.5 * (pos / max(npos, 1) + neg / max(nneg, 1)))
    return sum(per_image) / max(len(per_image), 1)


def test_line_verification_loss_equals_loop_and_skips_images_without_lines() -> None:
    g = _gen(4)
    n, b = 40, 4
    logits = torch.randn(n, generator=g) * 3
    labels = (torch.rand(n, generator=g) < 0.3).float()
    batch_idx = torch.randint(0, b, (n,), generator=g)
    batch_idx[batch_idx == 2] = 3  # image 2 has no lines
    got = line_verification_loss(logits, labels, batch_idx, b)
    assert got.item() == pytest.approx(_loop_lv(logits, labels, batch_idx, b), rel=1e-5)


def test_line_verification_loss_all_positive_and_all_negative() -> None:
    logits = torch.tensor([0.0, 2.0, -1.0])
    bce_pos = [math.log(2), math.log(1 + math.exp(-2)), math.log(1 + math.exp(1))]
    bce_neg = [math.log(2), math.log(1 + math.exp(2)), math.log(1 + math.exp(-1))]
    idx = torch.zeros(3, dtype=torch.long)
    assert line_verification_loss(logits, torch.ones(3), idx, 1).item() == pytest.approx(0.5 * sum(bce_pos) / 3)
    assert line_verification_loss(logits, torch.zeros(3), idx, 1).item() == pytest.approx(0.5 * sum(bce_neg) / 3)
    # Balanced: one positive among three lines weighs as much as the two negatives together.
    mixed = line_verification_loss(logits, torch.tensor([1.0, 0.0, 0.0]), idx, 1).item()
    assert mixed == pytest.approx(0.5 * (bce_pos[0] + (bce_neg[1] + bce_neg[2]) / 2))


def test_line_verification_loss_without_lines_is_zero_with_graph() -> None:
    logits = torch.zeros(0, requires_grad=True)
    loss = line_verification_loss(logits, torch.zeros(0), torch.zeros(0, dtype=torch.long), 3)
    assert loss.item() == 0.0
    assert loss.requires_grad
    loss.backward()


# --------------------------------------------------------------------------------------------------- L_sf spans


def test_longest_runs_equals_loop_on_random_profiles_with_limits() -> None:
    g = _gen(5)
    n_lines, n = 400, 64
    # Blocky random profiles so that long runs and ties occur.
    bias = torch.linspace(-0.2, 0.6, n_lines)[:, None]  # from mostly occluded to mostly visible lines
    pred = (torch.rand(n_lines, n // 4, generator=g) + bias).repeat_interleave(4, dim=1)
    gt = (torch.rand(n_lines, n // 2, generator=g) < 0.8).float().repeat_interleave(2, dim=1)
    pred[:, ::7] += 0.01 * torch.randn(n_lines, len(range(0, n, 7)), generator=g)
    for k in range(12):  # long occlusions (47..58 samples) straddling sf_max_span = 48
        pred[k, 3 : 3 + 47 + k], gt[k, 3 : 3 + 47 + k] = 0.1, 1.0
        pred[k, 2], pred[k, 3 + 47 + k] = 0.9, 0.9  # visible on both sides: the run is exactly 47 + k long
    for min_span, max_span in [(4, 48), (1, 64), (8, 16), (10, 9)]:
        i, j, valid = occluded_spans(pred, gt, min_span=min_span, max_span=max_span)
        for line in range(n_lines):
            ref = _loop_longest_run(pred[line].tolist(), gt[line].tolist(), min_span, max_span)
            assert (i[line].item(), j[line].item()) == ref, (line, min_span, max_span)
            assert valid[line].item() == (ref[1] > ref[0])
        if (min_span, max_span) == (4, 48):
            assert valid.sum() > 250
            assert (~valid).sum() > 50
            assert valid[:12].tolist() == [True, True] + [False] * 10  # the max_span limit is inclusive


def test_longest_runs_ties_pick_first_and_edge_cases() -> None:
    mask = torch.zeros(5, 20, dtype=torch.bool)
    mask[0, 2:7] = True
    mask[0, 10:15] = True  # tie of length 5: the first one wins
    mask[1, 0:3] = True
    mask[1, 15:20] = True  # longest run touching the end
    mask[2] = True  # full row
    mask[4, 19] = True
    start, length = longest_runs(mask)
    assert start[:2].tolist() == [2, 15]
    assert length[:2].tolist() == [5, 5]
    assert (start[2].item(), length[2].item()) == (0, 20)
    assert length[3].item() == 0
    assert (start[4].item(), length[4].item()) == (19, 1)
    e_start, e_len = longest_runs(torch.zeros(0, 64, dtype=torch.bool))
    assert e_start.shape == (0,)
    assert e_len.shape == (0,)


@pytest.mark.parametrize("n", [64, 48, 16])
def test_span_targets_recover_indices_by_ceil(n: int) -> None:
    ii, jj = torch.meshgrid(torch.arange(n + 1), torch.arange(n + 1), indexing="ij")
    i, j = ii.reshape(-1), jj.reshape(-1)
    keep = j > i
    i, j = i[keep], j[keep]
    t = span_targets(i, j, torch.ones_like(i, dtype=torch.bool), n)
    assert torch.equal(torch.ceil(n * t[:, 0]).long(), i)
    assert torch.equal(torch.ceil(n * t[:, 1]).long(), j)
    none = span_targets(i, j, torch.zeros_like(i, dtype=torch.bool), n)
    assert none.abs().sum() == 0


def _row_line(row: int, n: int) -> list[list[float]]:
    """A line whose n LoI samples fall exactly on pixel centres (row, 0..n-1): e0 = (row+.5, n-.5), e1 = (row+.5, .5)."""
    return [[row + 0.5, n - 0.5], [row + 0.5, 0.5]]


def test_segmentation_factor_loss_on_constructed_occlusion() -> None:
    n, h, w = 64, 6, 70
    lmap_gt = torch.zeros(1, h, w)
    lmap_gt[0, 1, :] = 1.0
    lmap_gt[0, 3, :] = 1.0
    lmap_gt[0, 4, :] = 1.0
    logit = torch.full((1, h, w), 5.0)
    logit[0, 1, 10:30] = -5.0  # line 0: occluded [10, 30)
    logit[0, 3, 5:7] = -5.0  # line 2: run of 2 < sf_min_span: no span
    logit[0, 4, 0:20] = -5.0  # line 3: occluded [0, 20), f* = 0
    lines = torch.tensor([_row_line(1, n), _row_line(2, n), _row_line(3, n), _row_line(4, n)])
    labels = torch.tensor([1.0, 0.0, 1.0, 1.0])
    batch_idx = torch.zeros(4, dtype=torch.long)
    targets = segmentation_factor_targets(
        torch.sigmoid(logit), lmap_gt, lines, batch_idx, n_pts=n, min_span=4, max_span=48
    )
    expected = torch.tensor([[9.5 / 64, 29.5 / 64], [0, 0], [0, 0], [0, 19.5 / 64]])
    torch.testing.assert_close(targets, expected)

    occ = torch.tensor([[0.2, 0.5], [0.9, 0.9], [0.1, 0.3], [0.05, 0.25]], requires_grad=True)
    sel = labels > 0.5
    ref = sum(
        (occ[k, 0].item() - expected[k, 0].item()) ** 2 + (occ[k, 1].item() - expected[k, 1].item()) ** 2
        for k in (0, 2, 3)
    )
    loss = segmentation_factor_loss(occ[sel], targets[sel])
    assert loss.item() == pytest.approx(ref / 3, rel=1e-6)

    # Through RoofMapNetLoss: the same value, with stack 0's line map as the prediction.
    cfg = _cfg()
    out = HeadOutputs(
        dghr=torch.zeros(2, 1, 2, h, w),
        qcc=torch.zeros(2, 1, 2, h, w),
        lmap=torch.stack([logit, torch.zeros_like(logit)]),
        joff=torch.zeros(2, 1, 1, 2, h, w),
        feature=torch.zeros(1, 4, h, w),
    )
    batch = {"jmap": torch.zeros(1, 1, h, w), "joff": torch.zeros(1, 1, 2, h, w), "lmap": lmap_gt}
    samples = LineSamples(lines=lines, batch_idx=batch_idx, labels=labels, feat=torch.zeros(4, 8))
    res = RoofMapNetLoss(cfg)(out, batch, samples, torch.zeros(4), occ, (torch.tensor([-0.5]), torch.tensor([2.0])))
    assert res["sf"].item() == pytest.approx(ref / 3, rel=1e-6)
    # sf_max_span = 19 drops both occluded runs (20 samples each): every target becomes "no span" (0, 0).
    res = RoofMapNetLoss(_cfg(sf_max_span=19))(
        out, batch, samples, torch.zeros(4), occ, (torch.tensor([-0.5]), torch.tensor([2.0]))
    )
    ref_none = sum(occ[k, 0].item() ** 2 + occ[k, 1].item() ** 2 for k in (0, 2, 3)) / 3
    assert res["sf"].item() == pytest.approx(ref_none, rel=1e-6)


def test_segmentation_factor_loss_equals_per_line_reference_on_random_maps() -> None:
    g = _gen(12)
    b, h, w, n_lines, n = 2, 12, 14, 120, 16
    cfg = _cfg(n_pts0=n, sf_min_span=2, sf_max_span=10)
    # Blocky maps: 2×2 cells, so that LoI profiles have runs of several samples.
    pred_logit = (torch.randn(b, h // 2, w // 2, generator=g) * 3).repeat_interleave(2, 1).repeat_interleave(2, 2)
    lmap_gt = (torch.rand(b, h // 2, w // 2, generator=g) < 0.7).float().repeat_interleave(2, 1).repeat_interleave(2, 2)
    samples = _samples(b, h, w, n_lines, g)
    occ = torch.rand(n_lines, 2, generator=g, requires_grad=True)
    out = HeadOutputs(
        dghr=torch.zeros(2, b, 2, h, w),
        qcc=torch.zeros(2, b, 2, h, w),
        lmap=torch.stack([pred_logit, torch.randn(b, h, w, generator=g)]),
        joff=torch.zeros(2, b, 1, 2, h, w),
        feature=torch.zeros(b, 4, h, w),
    )
    batch = {"jmap": torch.zeros(b, 1, h, w), "joff": torch.zeros(b, 1, 2, h, w), "lmap": lmap_gt}
    params = (torch.tensor([-0.5]), torch.tensor([2.0]))
    res = RoofMapNetLoss(cfg)(out, batch, samples, torch.zeros(n_lines), occ, params)
    # Reference: line by line, profiles sampled with the verifier's LoI function, spans found by the loop.
    lambdas = torch.linspace(0, 1, n)
    total, count, spans = 0.0, 0, 0
    for k in range(n_lines):
        if samples.labels[k] != 1:
            continue
        bi = samples.batch_idx[k : k + 1]
        a = loi_sample(torch.sigmoid(pred_logit)[:, None], samples.lines[k : k + 1], bi, lambdas)[0, 0].tolist()
        gt = loi_sample(lmap_gt[:, None], samples.lines[k : k + 1], bi, lambdas)[0, 0].tolist()
        i, j = _loop_longest_run(a, gt, 2, 10)
        f_t, b_t = (max(i - 0.5, 0) / n, (j - 0.5) / n) if j > i else (0.0, 0.0)
        spans += j > i
        total += (occ[k, 0].item() - f_t) ** 2 + (occ[k, 1].item() - b_t) ** 2
        count += 1
    assert count > 20
    assert spans > 5
    assert res["sf"].item() == pytest.approx(total / count, rel=1e-5)


def test_segmentation_factor_loss_without_true_lines_is_zero_with_graph() -> None:
    occ = torch.rand(0, 2, requires_grad=True)
    loss = segmentation_factor_loss(occ, torch.zeros(0, 2))
    assert loss.item() == 0.0
    assert loss.requires_grad
    loss.backward()


# --------------------------------------------------------------------------------------------------- RoofMapNetLoss


Case = tuple[HeadOutputs, dict[str, Tensor], LineSamples, Tensor, Tensor, tuple[Tensor, Tensor]]


def _full_case(seed: int, *, b: int = 2, h: int = 8, w: int = 12, n_lines: int = 30, grad: bool = True) -> Case:
    g = _gen(seed)
    out = _outputs(2, b, h, w, g, grad=grad)
    batch = _batch(b, h, w, g)
    samples = _samples(b, h, w, n_lines, g)
    logits = torch.randn(n_lines, generator=g).requires_grad_(grad)
    occ = torch.rand(n_lines, 2, generator=g).requires_grad_(grad)
    params = (torch.nn.Parameter(torch.tensor([-0.5])), torch.nn.Parameter(torch.tensor([2.0])))
    return out, batch, samples, logits, occ, params


def test_loss_module_terms_weights_and_logging_names() -> None:
    out, batch, samples, logits, occ, params = _full_case(6)
    weights = {"gauss": 1.5, "qcc": 0.5, "lhr": 2.0, "off": 0.25, "lv": 3.0, "sf": 0.75}
    loss = RoofMapNetLoss(_cfg(weights=weights))
    assert list(loss.parameters()) == []
    res = loss(out, batch, samples, logits, occ, params)
    for name in (*TERMS, "total", "jmap_loss", "joff_loss", "lmap_loss", "line_cls_loss", "sf_loss"):
        assert res[name].shape == ()
        assert res[name].dtype == torch.float32
        assert torch.isfinite(res[name])
    # each term equals its function
    jmap = batch["jmap"]
    target = dynamic_gaussian_target(jmap[:, 0], -0.5, 2.0)
    assert res["gauss"].item() == pytest.approx(gauss_loss(out.dghr, target, jmap[:, 0] > 0.5).item(), rel=1e-6)
    assert res["qcc"].item() == pytest.approx(qcc_loss(out.qcc, jmap[:, 0]).item(), rel=1e-6)
    assert res["lhr"].item() == pytest.approx(lhr_loss(out.lmap, batch["lmap"]).item(), rel=1e-6)
    assert res["off"].item() == pytest.approx(offset_loss(out.joff, batch["joff"], jmap).item(), rel=1e-6)
    lv = line_verification_loss(logits, samples.labels, samples.batch_idx, 2).item()
    assert res["lv"].item() == pytest.approx(lv, rel=1e-6)
    assert all(res[name].item() > 0 for name in TERMS)
    total = sum(weights[name] * res[name].item() for name in TERMS)
    assert res["total"].item() == pytest.approx(total, rel=1e-6)
    assert res["jmap_loss"].item() == pytest.approx(1.5 * res["gauss"].item() + 0.5 * res["qcc"].item(), rel=1e-6)
    assert res["joff_loss"].item() == pytest.approx(0.25 * res["off"].item(), rel=1e-6)
    assert res["lmap_loss"].item() == pytest.approx(2.0 * res["lhr"].item(), rel=1e-6)
    assert res["line_cls_loss"].item() == pytest.approx(3.0 * res["lv"].item(), rel=1e-6)
    assert res["sf_loss"].item() == pytest.approx(0.75 * res["sf"].item(), rel=1e-6)
    # readme form of L_gauss changes only that term
    res2 = RoofMapNetLoss(_cfg(weights=weights, gauss_loss="readme"))(out, batch, samples, logits, occ, params)
    assert res2["gauss"].item() != pytest.approx(res["gauss"].item(), rel=1e-3)
    assert res2["qcc"].item() == res["qcc"].item()


@pytest.mark.parametrize(
    ("term", "receivers"),
    [
        ("gauss", {"dghr"}),
        ("qcc", {"qcc"}),
        ("lhr", {"lmap"}),
        ("off", {"joff"}),
        ("lv", {"logits"}),
        ("sf", {"occ"}),
    ],
)
def test_each_term_reaches_only_its_tensor(term: str, receivers: set[str]) -> None:
    out, batch, samples, logits, occ, params = _full_case(7)
    res = RoofMapNetLoss(_cfg())(out, batch, samples, logits, occ, params)
    res[term].backward()
    tensors = {
        "dghr": out.dghr,
        "qcc": out.qcc,
        "lmap": out.lmap,
        "joff": out.joff,
        "feature": out.feature,
        "logits": logits,
        "occ": occ,
        "alpha": params[0],
        "beta": params[1],
    }
    for name, tensor in tensors.items():
        got = tensor.grad is not None and tensor.grad.abs().sum().item() > 0
        assert got == (name in receivers), (term, name)


def test_gauss_learnable_sends_gradient_to_alpha_beta() -> None:
    out, batch, samples, logits, occ, params = _full_case(8)
    res = RoofMapNetLoss(_cfg(gauss_learnable=True))(out, batch, samples, logits, occ, params)
    res["gauss"].backward()
    assert params[0].grad is not None
    assert params[0].grad.abs().item() > 0
    assert params[1].grad is not None
    assert params[1].grad.abs().item() > 0


def test_empty_cases_are_finite_and_backward_works() -> None:
    out, batch, _, _, _, params = _full_case(9)
    batch["jmap"].zero_()
    batch["joff"].zero_()
    empty = LineSamples(
        lines=torch.zeros(0, 2, 2),
        batch_idx=torch.zeros(0, dtype=torch.long),
        labels=torch.zeros(0),
        feat=torch.zeros(0, 8),
    )
    logits = torch.zeros(0, requires_grad=True)
    occ = torch.zeros(0, 2, requires_grad=True)
    res = RoofMapNetLoss(_cfg())(out, batch, empty, logits, occ, params)
    assert all(torch.isfinite(v) for v in res.values())
    assert res["off"].item() == 0.0
    assert res["lv"].item() == 0.0
    assert res["sf"].item() == 0.0
    assert res["gauss"].item() > 0  # negatives still supervised, normalised by max(ΣP, 1)
    res["total"].backward()
    assert out.dghr.grad is not None
    assert torch.isfinite(out.dghr.grad).all()
    assert out.joff.grad is not None
    assert out.joff.grad.abs().sum() == 0


def test_float32_math_under_bf16_autocast() -> None:
    out, batch, samples, logits, occ, params = _full_case(10, grad=False)
    ref = RoofMapNetLoss(_cfg())(out, batch, samples, logits, occ, params)
    bf = HeadOutputs(
        dghr=out.dghr.bfloat16(),
        qcc=out.qcc.bfloat16(),
        lmap=out.lmap.bfloat16(),
        joff=out.joff.bfloat16(),
        feature=out.feature,
    )
    with torch.autocast("cpu", dtype=torch.bfloat16):
        res = RoofMapNetLoss(_cfg())(bf, batch, samples, logits.bfloat16(), occ.bfloat16(), params)
    for name in (*TERMS, "total"):
        assert res[name].dtype == torch.float32
        assert res[name].item() == pytest.approx(ref[name].item(), rel=3e-2, abs=1e-3), name


def test_batch_shape_mismatch_is_a_one_line_data_error() -> None:
    out, batch, samples, logits, occ, params = _full_case(11)
    batch["lmap"] = torch.zeros(2, 16, 16)
    with pytest.raises(DataError, match=r"batch field 'lmap' has shape \(2, 16, 16\), expected \[B,H,W\]") as exc:
        RoofMapNetLoss(_cfg())(out, batch, samples, logits, occ, params)
    assert "\n" not in str(exc.value)
    del batch["joff"]
    with pytest.raises(DataError, match="batch has no field 'joff'"):
        RoofMapNetLoss(_cfg())(out, batch, samples, logits, occ, params)
