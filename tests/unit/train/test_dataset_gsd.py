"""Training copies the ground sample distance that ``roofmap preprocess`` recorded in ``dataset.json``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from roofmapnet.data.preprocess import dataset_gsd
from roofmapnet.train.main import train

pytestmark = pytest.mark.usefixtures("one_thread")


def test_dataset_gsd_reads_only_positive_numbers(tmp_path: Path) -> None:
    assert dataset_gsd(tmp_path) is None
    for value, expected in ((0.3, 0.3), (None, None), (-1, None), ("0.3", None), (True, None)):
        (tmp_path / "dataset.json").write_text(json.dumps({"format": "gis", "gsd_m": value, "samples": {}}))
        assert dataset_gsd(tmp_path) == expected
    (tmp_path / "dataset.json").write_text("[1, 2")
    assert dataset_gsd(tmp_path) is None


def test_training_saves_the_dataset_gsd_when_unset(tiny_config_path: Path, tiny_data: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    (data / "dataset.json").write_text(json.dumps({"format": "gis", "gsd_m": 0.125, "samples": {}}))
    result = train(
        tiny_config_path,
        data_root=data,
        gpus=0,
        max_steps=1,
        limit_val_batches=1,
        logdir=tmp_path / "run",
        progress=False,
    )
    saved = yaml.safe_load((result.run_dir / "config.yaml").read_text())
    assert saved["data"]["gsd_m"] == 0.125
