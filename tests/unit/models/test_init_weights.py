"""``init_weights``: fine-tuning's starting point from an official .pth, our .ckpt or an exported state-dict."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from roofmapnet.config import RootConfig
from roofmapnet.errors import CheckpointError
from roofmapnet.export.state_dict import export_state_dict
from roofmapnet.models.loading import init_weights
from roofmapnet.models.roofmapnet import RoofMapNet
from tests.unit.models.test_model import tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")

MANIFEST = Path(__file__).resolve().parents[2] / "data" / "roofmapnet_state_dict_manifest.json"


def _source(seed: int = 1, **overrides: object) -> RoofMapNet:
    """A network whose every tensor (BatchNorm statistics and counters too) differs from a fresh one's."""
    torch.manual_seed(seed)
    model = RoofMapNet(tiny_config(**overrides))
    model.train()
    with torch.no_grad():
        model(torch.randn(2, 3, 64, 64))
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.add_(0.5)
    return model.eval()


def _fresh(**overrides: object) -> RoofMapNet:
    torch.manual_seed(99)
    return RoofMapNet(tiny_config(**overrides))


def _official_pth(model: RoofMapNet, path: Path) -> Path:
    """The released ``.pth`` layout: a plain state dict with ``detection.…`` keys, no sidecar, no wrapper."""
    torch.save({k: v.clone() for k, v in model.state_dict().items()}, path)
    return path


def _assert_loaded(target: RoofMapNet, source: RoofMapNet, keys: tuple[str, ...] | None = None) -> None:
    got, want = target.state_dict(), source.state_dict()
    for key in keys if keys is not None else tuple(want):
        assert torch.equal(got[key], want[key]), key


def test_official_manifest_layout_initialises_the_default_architecture_strictly(tmp_path: Path) -> None:
    """A file with exactly the released checkpoint's keys, shapes and dtypes (from the manifest, not the model)."""
    gen = torch.Generator().manual_seed(0)
    official = {
        e["key"]: torch.randn(e["shape"], generator=gen)
        if e["dtype"] == "float32"
        else torch.full(e["shape"], 7, dtype=getattr(torch, e["dtype"]))
        for e in json.loads(MANIFEST.read_text())["entries"]
    }
    path = tmp_path / "roofmapnet_official.pth"
    torch.save(official, path)
    target = RoofMapNet(RootConfig().model)
    report = init_weights(target, path)
    assert report.skipped == 0
    assert len(report.loaded) == len(official)
    got = target.state_dict()
    assert all(torch.equal(got[k], v) for k, v in official.items())


def test_official_pth_strict_loads_every_tensor(tmp_path: Path) -> None:
    source = _source()
    target = _fresh()
    report = init_weights(target, _official_pth(source, tmp_path / "roofmapnet.pth"))
    _assert_loaded(target, source)
    assert report.skipped == 0
    assert len(report.loaded) == len(source.state_dict())
    assert (
        report.summary()
        == f"initialised {len(report.loaded)} of {len(report.loaded)} tensors from "
        + str(tmp_path / "roofmapnet.pth")
        + " (every key matched)"
    )
    assert target.detection.backbone.gaussalpha.requires_grad  # parameters stay parameters


def test_official_pth_of_another_width_is_a_one_line_error_without_partial(tmp_path: Path) -> None:
    path = _official_pth(_source(dim_fc=32), tmp_path / "wide.pth")
    target = _fresh()
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(CheckpointError) as exc:
        init_weights(target, path)
    text = str(exc.value)
    assert "\n" not in text
    wide, fresh = _source(dim_fc=32).state_dict(), target.state_dict()
    n = sum(wide[k].shape != v.shape for k, v in fresh.items())
    assert n == 5  # fc2's three linear layers' weights and the two hidden biases
    assert text.startswith(f"{path} does not fit the model of this config: {n} shape-mismatched (")
    assert text.count(" vs ") == 3  # the first three are named
    assert "detection.fc2.0.weight [32, 40] vs [16, 40]" in text
    assert text.endswith("(use partial to load the keys that match)")  # the field; the CLI writes --partial
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())  # nothing half-loaded


def test_partial_loads_what_matches_and_reports_every_skipped_key(tmp_path: Path) -> None:
    source = _source(dim_fc=32)
    sd = source.state_dict()
    dropped = "detection.lambda_1"
    kept = {k: v for k, v in sd.items() if k != dropped}
    kept["detection.extra_head.weight"] = torch.ones(3)
    path = tmp_path / "other.pth"
    torch.save(kept, path)
    target = _fresh()
    fresh = {k: v.clone() for k, v in target.state_dict().items()}
    report = init_weights(target, path, partial=True)
    assert report.missing == (dropped,)
    assert report.unexpected == ("detection.extra_head.weight",)
    mismatched = {k for k, _, _ in report.mismatched}
    assert mismatched == {k for k, v in target.state_dict().items() if k in sd and sd[k].shape != v.shape}
    assert "detection.fc2.0.weight" in mismatched
    assert ("detection.fc2.0.weight", (32, 40), (16, 40)) in report.mismatched
    assert report.skipped == 2 + len(mismatched) == len(report.rows())
    _assert_loaded(target, source, report.loaded)
    got = target.state_dict()
    for key in (dropped, *mismatched):  # the rest keeps the fresh initialisation
        assert torch.equal(got[key], fresh[key]), key
    assert set(report.loaded) | {dropped} | mismatched == set(got)
    data = report.to_dict()
    assert data["missing"] == [dropped]
    assert {"key": "detection.fc2.0.weight", "file": [32, 40], "model": [16, 40]} in data["mismatched"]
    assert "1 missing, 1 unexpected, 5 shape-mismatched" in report.summary()


def test_strict_error_counts_and_names_missing_and_unexpected(tmp_path: Path) -> None:
    sd = _source().state_dict()
    dropped = list(sd)[-5:]
    path = tmp_path / "cut.pth"
    torch.save({**{k: v for k, v in sd.items() if k not in dropped}, "head.weight": torch.ones(1)}, path)
    with pytest.raises(CheckpointError) as exc:
        init_weights(_fresh(), path)
    text = str(exc.value)
    assert f"5 missing ({dropped[0]}, {dropped[1]}, {dropped[2]}, …)" in text
    assert "1 unexpected (head.weight)" in text


def test_lightning_ckpt_and_exported_state_dict_ignore_their_stored_config(tmp_path: Path) -> None:
    root = RootConfig(model=tiny_config(line_score_thres=0.3))
    source = _source(line_score_thres=0.3)
    ckpt = tmp_path / "last.ckpt"
    torch.save(
        {
            "epoch": 4,
            "global_step": 200,
            "state_dict": {**{f"model.{k}": v for k, v in source.state_dict().items()}, "criterion.x": torch.ones(1)},
            "hyper_parameters": {"config": root.model_dump(mode="json")},
            "optimizer_states": [{"state": {}, "param_groups": []}],
        },
        ckpt,
    )
    exported, _ = export_state_dict(source, root, tmp_path / "export" / "model.pth")
    for path in (ckpt, exported):
        target = _fresh()
        report = init_weights(target, path)
        assert report.skipped == 0, path
        _assert_loaded(target, source)
        assert target.line_score_thres != 0.3  # weights only: the target's own config stays


def test_a_file_of_another_network_or_a_bad_file(tmp_path: Path) -> None:
    path = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.ones(2, 2), "fc.bias": torch.ones(2)}, path)
    with pytest.raises(CheckpointError) as exc:
        init_weights(_fresh(), path, partial=True)
    assert str(exc.value) == f"{path}: none of its 2 keys fits the model (is it a RoofMapNet checkpoint?)"
    with pytest.raises(CheckpointError, match="file not found"):
        init_weights(_fresh(), tmp_path / "nope.pth")
