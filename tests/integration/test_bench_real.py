"""``bench/bench_real.py`` on the tiny dataset: evaluations at the requested steps, JSON, PNG, RNG isolation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench import bench_real

pytestmark = pytest.mark.usefixtures("one_thread")


def _run(tiny_config_path: Path, data: Path, out: Path, *extra: str) -> dict:
    argv = [
        "--data-root", str(data), "--preset", str(tiny_config_path), "--steps", "4", "--workers", "0",
        "--gpus", "0", "--out", str(out), *extra,
    ]  # fmt: skip
    assert bench_real.main(argv) == 0
    return json.loads((out / bench_real.RESULT_FILE).read_text())


def test_bench_real_evaluates_at_the_requested_steps_without_changing_the_training(
    tiny_config_path: Path, tiny_data: Path, tmp_path: Path
) -> None:
    doc = _run(tiny_config_path, tiny_data, tmp_path / "a", "--eval-at", "2", "--set", "optim.lr=0.002")
    assert [e["step"] for e in doc["evaluations"]] == [2, 4]
    assert doc["final_step"] == 4
    assert doc["overrides"] == {"optim.lr": 0.002}
    assert doc["config"]["optim"]["lr"] == 0.002
    for entry in doc["evaluations"]:
        for name in ("sAP5", "sAP10", "sAP15", "msAP", "mAPJ", "APH", "FH", "loss_total"):
            assert name in entry["metrics"], name
        assert entry["metrics"]["images"] == 4  # the whole valid split
        assert entry["peak_rss_mib"] > 0
        assert entry["steps_per_second"] > 0
        metrics = json.loads((tmp_path / "a" / "eval" / f"step_{entry['step']:06d}" / "metrics.json").read_text())
        assert metrics["metrics"]["sAP10"] == entry["metrics"]["sAP10"]  # the evaluation is roofmap validate's
    assert doc["machine"]["cpu"]
    assert doc["steps_per_second"] > 0
    assert doc["best"]["step"] in (2, 4)
    png = Image.open(tmp_path / "a" / bench_real.CURVE_FILE)
    assert png.size == (800, 600)
    assert (np.asarray(png.convert("RGB")) != 255).any()
    # Evaluating at step 2 restored every RNG: the step-4 weights equal those of a run evaluated only at the end.
    doc_b = _run(tiny_config_path, tiny_data, tmp_path / "b", "--set", "optim.lr=0.002")
    assert [e["step"] for e in doc_b["evaluations"]] == [4]
    a = torch.load(tmp_path / "a" / "checkpoints" / "step_000004.ckpt", map_location="cpu", weights_only=True)
    b = torch.load(tmp_path / "b" / "checkpoints" / "step_000004.ckpt", map_location="cpu", weights_only=True)
    assert a["state_dict"].keys() == b["state_dict"].keys()
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    quality = [k for k in doc["evaluations"][1]["metrics"] if not k.endswith("per_second")]
    assert {k: doc_b["evaluations"][0]["metrics"][k] for k in quality} == {
        k: doc["evaluations"][1]["metrics"][k] for k in quality
    }


def test_bench_real_init_from_and_the_time_budget(tiny_config_path: Path, tiny_data: Path, tmp_path: Path) -> None:
    first = _run(tiny_config_path, tiny_data, tmp_path / "src")
    ckpt = tmp_path / "src" / "checkpoints" / "step_000004.ckpt"
    assert first["init_from"] is None
    doc = _run(tiny_config_path, tiny_data, tmp_path / "ft", "--init-from", str(ckpt), "--minutes", "1e-6")
    assert doc["init_report"]["loaded"] > 0
    assert doc["init_report"]["mismatched"] == []
    # A budget spent after the first step stops the run there, and that step is measured.
    assert doc["final_step"] == 1
    assert [e["step"] for e in doc["evaluations"]] == [1]
    assert doc["evaluations"][0]["stopped_by_budget"] is True


def test_eval_steps_and_bad_arguments() -> None:
    assert bench_real.eval_steps(1000, "250,500", None) == [250, 500, 1000]
    assert bench_real.eval_steps(1000, None, 300) == [300, 600, 900, 1000]
    with pytest.raises(SystemExit, match=r"outside 1\.\.100"):
        bench_real.eval_steps(100, "250", None)
    with pytest.raises(SystemExit):
        bench_real.parse_args([])  # neither a RoofVec folder nor --data-root
