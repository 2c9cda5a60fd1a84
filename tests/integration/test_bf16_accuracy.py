"""bf16 autocast keeps the accuracy of a trained model (issue 14): sAP10 within 0.5 of fp32, line scores close.

The model is ``tests/data/synth128`` (trained on ``roofmap synth`` roofs; an untrained model's scores are noise and
would say nothing). The validation roofs are rendered here with another seed than its training data.

What the figures were when this test was written (2-core AMD EPYC, AVX512_BF16, no AMX; 40 roofs): sAP10 37.09
(fp32) vs 36.99 (bf16). Of each image's 100 best fp32 lines, 97.6 % are found again by bf16 (both endpoints within
0.5 heatmap px); their score differences have median 1.6e-3, 90th percentile 9.9e-3 and maximum 0.55. The tail is
the model's own sensitivity, not the kernels': rounding only the weights to bf16 (activations in fp32) already moves
the worst score by 0.45. So the test bounds the bulk of the scores, and the tail is documented in
docs/performance.md rather than asserted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor

from roofmapnet.data.preprocess import PreprocessOptions, preprocess
from roofmapnet.data.synth import generate_dataset
from roofmapnet.evaluation.validate import ValidateOptions, run_validation
from roofmapnet.inference.predictor import model_input
from roofmapnet.models.loading import load_model

pytestmark = pytest.mark.usefixtures("one_thread")

MODEL = Path(__file__).resolve().parents[1] / "data" / "synth128" / "model.pth"
N_IMAGES = 40
TOP = 100


@pytest.fixture(scope="module")
def roofs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 held-out synthetic roofs (seed 7; the model was trained on seed 0), preprocessed for the model."""
    raw = tmp_path_factory.mktemp("raw")
    generate_dataset(raw, counts={"valid": N_IMAGES}, image_size=256, seed=7, progress=False)
    _, cfg = load_model(MODEL)
    out = tmp_path_factory.mktemp("data")
    summary = preprocess(
        raw, out, PreprocessOptions(image_size=cfg.model.image_size, heatmap_size=cfg.model.heatmap_size)
    )
    assert summary.ok
    return out


def _sap10(data: Path, out: Path, precision: str) -> float:
    model, cfg = load_model(MODEL)
    options = ValidateOptions(split="valid", device="cpu", precision=precision, facets=False)
    return float(run_validation(model, cfg, data, out, options).metrics["sAP10"])


def test_bf16_sap10_within_half_a_point_of_fp32(roofs: Path, tmp_path: Path) -> None:
    fp32 = _sap10(roofs, tmp_path / "fp32", "fp32")
    bf16 = _sap10(roofs, tmp_path / "bf16", "bf16")
    assert fp32 > 25.0, f"the fixture model should have learned the synthetic roofs (sAP10 {fp32:.2f})"
    assert abs(bf16 - fp32) <= 0.5, f"sAP10 fp32 {fp32:.2f} vs bf16 {bf16:.2f}"


def test_bf16_top_line_scores_stay_close_to_fp32(roofs: Path) -> None:
    model, cfg = load_model(MODEL)
    images = sorted((roofs / "valid").glob("*.png"))
    x = torch.stack([model_input(np.asarray(Image.open(p).convert("RGB")), cfg.model) for p in images])
    ref = model.predict(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = model.predict(x)
    diffs: list[Tensor] = []
    found = total = 0
    for a, b in zip(ref, low, strict=True):
        lines_a, scores_a = a.lines[:TOP].reshape(-1, 4), a.scores[:TOP]
        total += len(lines_a)
        if len(lines_a) == 0 or len(b.lines) == 0:
            continue
        lines_b = b.lines.reshape(-1, 4).float()
        # A line is the same line when both endpoints agree within half a heatmap pixel, in either order.
        dist = torch.minimum(torch.cdist(lines_a, lines_b), torch.cdist(lines_a, lines_b[:, [2, 3, 0, 1]]))
        best = dist.min(dim=1)
        same = best.values < 0.5
        found += int(same.sum())
        diffs.append((scores_a[same] - b.scores[best.indices[same]].float()).abs())
    assert total >= N_IMAGES * 20, "the model should find lines on every roof"
    assert found >= 0.95 * total, f"bf16 found {found} of fp32's {total} best lines"
    d = torch.cat(diffs)
    assert all(s.dtype == torch.float32 for s in (a.scores for a in low)), "scores are fp32 under autocast"
    assert float(d.median()) <= 5e-3, f"median |Δscore| {float(d.median()):.2e}"
    assert float(d.quantile(0.9)) <= 1.5e-2, f"90th percentile |Δscore| {float(d.quantile(0.9)):.2e}"
