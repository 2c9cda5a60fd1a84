"""The Python API: the runnable example of docs/python-api.md, executed as written, and the API's contracts."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import roofmapnet
from roofmapnet.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "python-api.md"

pytestmark = pytest.mark.usefixtures("one_thread")


def _example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.DOTALL)
    assert len(blocks) == 1, "docs/python-api.md has one runnable python block"
    return blocks[0]


def test_the_documented_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "config" / "presets").mkdir(parents=True)
    shutil.copy(REPO / "config" / "presets" / "tiny.yaml", tmp_path / "config" / "presets" / "tiny.yaml")
    monkeypatch.chdir(tmp_path)  # as if run from the repository root
    namespace: dict[str, object] = {"__name__": "__example__"}
    exec(compile(_example(), str(DOC), "exec"), namespace)  # the documented example, as written

    result = namespace["result"]
    assert result.run_dir == (tmp_path / "runs" / "exp").resolve()  # type: ignore[attr-defined]
    assert result.global_step == 3  # type: ignore[attr-defined]  # resumed from step 2 to 3
    metrics = namespace["metrics"]
    assert isinstance(metrics, dict)
    assert {"sAP5", "sAP10", "sAP15", "msAP", "loss_total"} <= set(metrics)
    assert (result.last_checkpoint.parent / "validate-valid" / "metrics.json").is_file()  # type: ignore[attr-defined]
    assert (tmp_path / "model.pt").is_file()
    assert namespace["exported"].passed  # type: ignore[attr-defined]
    wireframes = namespace["wireframes"]
    assert isinstance(wireframes, list)
    assert len(wireframes) == 2
    wf = wireframes[0]
    assert isinstance(wf, roofmapnet.Wireframe)
    document = wf.to_json()
    json.dumps(document, allow_nan=False)
    assert document["width"] == document["height"] == 128  # the original image's frame, not the 64² input
    assert 0 < len(document["lines"]) == len(document["scores"]) == len(wf.scores)
    assert all(s > 0.3 for s in document["scores"])  # threshold=0.3 of the call
    assert document["threshold"] == 0.3
    lines = [f for f in namespace["geojson"]["features"] if f["properties"]["kind"] == "line"]  # type: ignore[index]
    assert len(lines) == len(document["lines"])
    overlay = namespace["overlay"]
    assert isinstance(overlay, np.ndarray)
    assert overlay.shape == (128, 128, 3)
    assert overlay.dtype == np.uint8
    assert (tmp_path / "overlay.png").is_file()

    # The exported model loads through the same API and parses the same images.
    again = roofmapnet.Model.load(tmp_path / "model.pt", device="cpu").predict(namespace["images"], threshold=0.3)
    assert [len(w.scores) for w in again] == [len(w.scores) for w in wireframes]


def test_arrays_and_options_are_validated(tmp_path: Path) -> None:
    from tests.tiny import write_tiny_checkpoint

    model = roofmapnet.Model.load(write_tiny_checkpoint(tmp_path / "tiny.ckpt"), device="cpu")
    rgb = np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    [wf] = model.predict(rgb, max_lines=3)
    assert wf.image_size == (40, 60)
    assert len(wf.scores) <= 3
    assert wf.to_json()["image"] == "<array 0>"
    assert wf.overlay().shape == (40, 60, 3)
    with pytest.raises(ConfigError, match=r"infer.threshold 2.0: Input should be less than or equal to 1"):
        model.predict(rgb, threshold=2.0)
    with pytest.raises(roofmapnet.errors.DataError, match=r"expected RGB uint8"):  # type: ignore[attr-defined]
        model.predict(rgb.astype(np.float32))


def test_train_rejects_unknown_keywords_and_bad_values_by_field(tiny_data: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"max_stepz: unknown option") as info:
        roofmapnet.train(None, data_root=tiny_data, logdir=tmp_path, max_stepz=1)
    assert info.value.fields == ("max_stepz",)
    with pytest.raises(ConfigError, match=r"^precision 8: expected one of") as info:
        roofmapnet.train(None, data_root=tiny_data, logdir=tmp_path, precision="8")
    assert info.value.fields == ("precision",)
    with pytest.raises(ConfigError, match=r"model.batch_size: Input should be greater than 0"):
        roofmapnet.train(None, data_root=tiny_data, logdir=tmp_path, **{"model.batch_size": 0})
    with pytest.raises(ConfigError, match=r"split test2: expected one of train, valid, test"):
        roofmapnet.validate(tmp_path / "x.ckpt", tiny_data, split="test2")
    assert not list(tmp_path.iterdir())  # nothing was claimed or written


def test_the_verbs_and_the_sub_packages_share_their_names() -> None:
    import roofmapnet.train.main as seed_main  # every import form of the sub-packages works
    from roofmapnet.export.api import export_checkpoint
    from roofmapnet.train.run import fit

    assert callable(roofmapnet.train)
    assert callable(roofmapnet.export)
    assert roofmapnet.train.run.fit is fit
    assert roofmapnet.train.main is seed_main
    assert roofmapnet.export.export_checkpoint is export_checkpoint
    assert "roofmap train" in (roofmapnet.train.__doc__ or "")


def test_import_roofmapnet_is_light() -> None:
    code = (
        "import sys, roofmapnet; print(sorted(m for m in ('torch', 'pytorch_lightning', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"
