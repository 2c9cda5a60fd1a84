"""Weights files: official .pth, Lightning .ckpt, exported .pth + sidecar, and one-line errors for bad files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from roofmapnet.config import ModelConfig, RootConfig
from roofmapnet.errors import CheckpointError
from roofmapnet.models import loading
from roofmapnet.models.loading import SIDECAR_FORMAT, load_model, load_state_dict_file
from roofmapnet.models.roofmapnet import RoofMapNet
from tests.unit.models.test_model import tiny_config, tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")


def _tiny_root(**overrides: object) -> RootConfig:
    return RootConfig(model=tiny_config(**overrides))


def _trained_like(model: RoofMapNet) -> RoofMapNet:
    """Give the BatchNorm buffers non-default values so that a load that skipped them would be detected."""
    model.train()
    with torch.no_grad():
        model(torch.randn(2, 3, 64, 64))
    return model.eval()


def _assert_same_model(a: RoofMapNet, b: RoofMapNet) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(a.eval()(x).qcc, b.eval()(x).qcc, rtol=0, atol=0)


def _one_line_error(exc: pytest.ExceptionInfo[CheckpointError]) -> str:
    text = str(exc.value)
    assert "\n" not in text
    assert text
    return text


def test_official_default_pth_loads_strict_with_default_config(tmp_path: Path) -> None:
    torch.manual_seed(0)
    src = RoofMapNet(ModelConfig())
    with torch.no_grad():
        src.detection.backbone.gaussalpha.fill_(-0.7)
    path = tmp_path / "roofmapnet.pth"
    torch.save(src.state_dict(), path)
    model, cfg = load_model(path)
    assert cfg == RootConfig()
    assert model.cfg == ModelConfig()
    assert not model.training
    assert float(model.detection.backbone.gaussalpha.detach()) == pytest.approx(-0.7)
    loaded = model.state_dict()
    for key, value in src.state_dict().items():
        assert torch.equal(loaded[key], value), key


def test_official_format_with_given_config(tmp_path: Path) -> None:
    src = _trained_like(tiny_model(seed=1))
    path = tmp_path / "tiny.pth"
    torch.save(src.state_dict(), path)
    sd, cfg = load_state_dict_file(path)
    assert cfg is None
    assert set(sd) == set(src.state_dict())
    model, root = load_model(path, cfg=_tiny_root())
    assert root.model == tiny_config()
    _assert_same_model(src, model)


def test_lightning_checkpoint_builds_the_model_from_its_config(tmp_path: Path) -> None:
    root = _tiny_root(n_dyn_junc=17)
    src = _trained_like(RoofMapNet(root.model))
    ckpt = {
        "epoch": 3,
        "global_step": 120,
        "state_dict": {**{f"model.{k}": v for k, v in src.state_dict().items()}, "criterion.dummy": torch.ones(1)},
        "hyper_parameters": {"config": root.model_dump(mode="json")},
        "optimizer_states": [],
    }
    path = tmp_path / "last.ckpt"
    torch.save(ckpt, path)
    model, cfg = load_model(path)  # no cfg given: the checkpoint's config defines the model
    assert cfg == root
    assert model.cfg.n_dyn_junc == 17
    _assert_same_model(src, model)
    # A given cfg does not override the architecture stored in the checkpoint.
    model2, cfg2 = load_model(path, cfg=RootConfig())
    assert cfg2 == root
    assert model2.cfg == root.model


def test_exported_state_dict_with_sidecar(tmp_path: Path) -> None:
    root = _tiny_root(line_score_thres=0.3)
    src = _trained_like(RoofMapNet(root.model))
    path = tmp_path / "export" / "roofmapnet-state.pth"
    path.parent.mkdir()
    torch.save(src.state_dict(), path)
    meta = {"format": SIDECAR_FORMAT, "version": "0.1.0", "config": root.model_dump(mode="json")}
    Path(str(path) + ".json").write_text(json.dumps(meta))
    _sd, cfg = load_state_dict_file(path)
    assert cfg == root
    model, cfg2 = load_model(path, cfg=RootConfig())  # the sidecar wins over a generic config
    assert cfg2 == root
    assert model.line_score_thres == 0.3
    _assert_same_model(src, model)
    # A sidecar of another format is ignored (then the given cfg is used).
    Path(str(path) + ".json").write_text(json.dumps({"format": "something-else", "config": {}}))
    assert load_state_dict_file(path)[1] is None


def test_torch_load_is_always_weights_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "tiny.pth"
    torch.save(tiny_model().state_dict(), path)
    seen: list[dict[str, Any]] = []
    real = torch.load

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(loading.torch, "load", spy)
    load_model(path, cfg=_tiny_root())
    assert seen
    assert all(k.get("weights_only") is True for k in seen)
    assert all(k.get("map_location") == "cpu" for k in seen)


def test_missing_and_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError) as exc:
        load_model(tmp_path / "nope.pth")
    assert _one_line_error(exc) == f"{tmp_path / 'nope.pth'}: file not found"

    good = tmp_path / "good.pth"
    torch.save(tiny_model().state_dict(), good)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError) as exc:
        load_model(truncated, cfg=_tiny_root())
    text = _one_line_error(exc)
    assert text.startswith(f"{truncated}: corrupt or truncated PyTorch file")

    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"this is not a torch file at all" * 10)
    with pytest.raises(CheckpointError) as exc:
        load_model(junk)
    assert _one_line_error(exc).startswith(f"{junk}: not a PyTorch file")


def test_non_state_dict_files(tmp_path: Path) -> None:
    listed = tmp_path / "list.pth"
    torch.save([torch.ones(2)], listed)
    with pytest.raises(CheckpointError) as exc:
        load_model(listed)
    assert _one_line_error(exc) == f"{listed}: not a state dict (the file holds a list)"

    numbers = tmp_path / "numbers.pth"
    torch.save({"detection.fc1.weight": torch.ones(1), "epoch": 3}, numbers)
    with pytest.raises(CheckpointError) as exc:
        load_model(numbers)
    assert "not a state dict of tensors (entry 'epoch' is a int)" in _one_line_error(exc)

    pickled = tmp_path / "pickled.pth"
    torch.save({"model": torch.nn.Linear(2, 2)}, pickled)  # a whole module: refused by weights_only
    with pytest.raises(CheckpointError) as exc:
        load_model(pickled)
    assert "pickled Python objects" in _one_line_error(exc)


def test_wrong_keys_and_shapes(tmp_path: Path) -> None:
    sd = tiny_model().state_dict()
    missing = dict(sd)
    dropped = list(sd)[-12:]
    for k in dropped:
        del missing[k]
    path = tmp_path / "missing.pth"
    torch.save(missing, path)
    with pytest.raises(CheckpointError) as exc:
        load_model(path, cfg=_tiny_root())
    assert _one_line_error(exc) == f"{path} is not a RoofMapNet checkpoint: missing 12 keys, e.g. {dropped[0]}"

    extra = {**sd, "head.weight": torch.ones(1)}
    path = tmp_path / "extra.pth"
    torch.save(extra, path)
    with pytest.raises(CheckpointError) as exc:
        load_model(path, cfg=_tiny_root())
    assert "unexpected 1 key, e.g. head.weight" in _one_line_error(exc)

    # Weights of another width: the first differing key is named with both shapes.
    path = tmp_path / "wider.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError) as exc:
        load_model(path, cfg=_tiny_root(dim_fc=32))
    text = _one_line_error(exc)
    assert text == (
        f"{path}: detection.fc2.0.weight has shape [16, 40] in the file but [32, 40] in the model "
        "(the weights were probably trained with a different model config)"
    )


def test_invalid_config_in_checkpoint(tmp_path: Path) -> None:
    data = _tiny_root().model_dump(mode="json")
    data["model"]["n_pts1"] = 5  # 16 is not a multiple of 5
    path = tmp_path / "bad.ckpt"
    torch.save({"state_dict": {"model.x": torch.ones(1)}, "hyper_parameters": {"config": data}}, path)
    with pytest.raises(CheckpointError) as exc:
        load_model(path)
    text = _one_line_error(exc)
    assert text.startswith(f"{path}: hyper_parameters.config")
    assert "n_pts1" in text
