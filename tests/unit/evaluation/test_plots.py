"""``plot_curves`` (learning curves) and its tick choice; the PR plot's own test is in tests/unit/evaluation/test_metrics.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from roofmapnet.evaluation.plots import PALETTE, nice_ticks, plot_curves, pr_plot_area


def test_nice_ticks() -> None:
    np.testing.assert_allclose(nice_ticks(0, 1), np.linspace(0, 1, 11))
    np.testing.assert_array_equal(nice_ticks(0, 2600), [0, 500, 1000, 1500, 2000, 2500])
    np.testing.assert_array_equal(nice_ticks(0, 70), np.arange(0, 71, 10))
    assert not np.signbit(nice_ticks(0, 1)).any()  # no "-0.0" label


def test_learning_curve_points_land_where_their_values_say(tmp_path: Path) -> None:
    path = tmp_path / "curve.png"
    plot_curves(
        {"sAP10": ([0, 1000, 2000], [0, 40, 60])},
        path,
        "learning curve",
        x_label="training step",
        y_label="score (%)",
        x_range=(0, 2000),
        y_range=(0, 80),
        markers=True,
        legend="lower right",
    )
    img = np.asarray(Image.open(path).convert("RGB")).astype(int)
    left, top, right, bottom = pr_plot_area((800, 600))
    x = round(left + 0.5 * (right - left))
    y = round(bottom - 0.5 * (bottom - top))  # step 1000, score 40
    assert (np.abs(img[y - 2 : y + 3, x - 2 : x + 3] - np.array(PALETTE[0])).sum(-1) == 0).any()
    with pytest.raises(ValueError, match="training step has 2 points but score"):
        plot_curves({"bad": ([0, 1], [1])}, path, "x", x_label="training step", y_label="score")
    with pytest.raises(ValueError, match="empty plot range"):
        plot_curves({}, path, "x", x_label="a", y_label="b", x_range=(1, 1))
