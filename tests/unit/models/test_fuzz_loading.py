"""Fuzzing the weights loader: every file handed to ``--checkpoint`` / ``--model`` loads or is one CheckpointError.

Inputs: random bytes, a real tiny ``.pth`` / Lightning ``.ckpt`` with random edits (flipped bytes, truncation),
``torch.save`` of random structures (right keys with wrong shapes and dtypes, foreign keys, non-tensors, random
stored configs) and random JSON sidecars next to a valid state dict.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st

from roofmapnet.config import RootConfig
from roofmapnet.errors import CheckpointError
from roofmapnet.models.loading import load_model
from roofmapnet.models.roofmapnet import RoofMapNet
from tests.fuzzing import fuzz, json_values, mutated, outcome
from tests.unit.models.test_model import tiny_config, tiny_model

pytestmark = pytest.mark.fuzz

ROOT = RootConfig(model=tiny_config())
STATE = tiny_model().state_dict()
KEYS = sorted(STATE)


def _saved(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


PTH = _saved(STATE)
CKPT = _saved(
    {
        "state_dict": {f"model.{k}": v for k, v in STATE.items()},
        "hyper_parameters": {"config": ROOT.model_dump(mode="json")},
        "epoch": 1,
    }
)


def _load(path: Path) -> RoofMapNet | CheckpointError:
    result = outcome(load_model, path, cfg=ROOT)
    if isinstance(result, tuple):
        return result[0]
    assert isinstance(result, CheckpointError), result
    return result


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-weights")


@fuzz(40)
@given(data=st.binary(max_size=256) | mutated(PTH, max_edits=4) | mutated(CKPT, max_edits=4))
@example(data=bytes([0x84, 0xE6, 0x5C, 0x44]) * 64)  # random bytes: were "pickled Python objects" (issue 16)
@example(data=PTH[: len(PTH) // 2])  # truncated
@example(data=b"PK\x05\x06" + bytes(18))  # an empty zip archive
def test_weight_file_bytes(folder: Path, data: bytes) -> None:
    path = folder / "w.pth"
    path.write_bytes(data)
    _load(path)


tensors = st.builds(
    lambda shape, dtype: torch.zeros(shape, dtype=dtype),
    st.lists(st.integers(0, 3), max_size=4).map(tuple),
    st.sampled_from([torch.float32, torch.float16, torch.int64, torch.bool, torch.complex64, torch.uint8]),
)
values = tensors | json_values
state_dicts = st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=10) | st.integers(), values, max_size=6)


@st.composite
def structures(draw: st.DrawFn) -> Any:
    kind = draw(st.sampled_from(("partial", "foreign", "lightning", "plain")))
    if kind == "partial":  # the real state dict with a few entries replaced or dropped
        sd: dict[Any, Any] = dict(STATE)
        for key in draw(st.lists(st.sampled_from(KEYS), max_size=3)):
            if draw(st.booleans()):
                sd.pop(key, None)
            else:
                sd[key] = draw(values)
        return sd
    if kind == "foreign":
        return draw(state_dicts)
    if kind == "lightning":
        hparams = draw(st.none() | json_values | st.fixed_dictionaries({"config": json_values}))
        return {
            "state_dict": draw(state_dicts | st.just({f"model.{k}": v for k, v in STATE.items()}) | values),
            "hyper_parameters": hparams,
        }
    return draw(values | st.lists(tensors, max_size=3))


@fuzz(40)
@given(obj=structures())
@example(obj={"detection.x": torch.zeros(2), 3: torch.zeros(1)})  # a non-string key
@example(obj={k: v.to(torch.complex64) if v.is_floating_point() else v for k, v in STATE.items()})
def test_saved_structures(folder: Path, obj: Any) -> None:
    path = folder / "s.pth"
    path.write_bytes(_saved(obj))
    _load(path)


@fuzz(40)
@given(meta=json_values | st.fixed_dictionaries({"format": st.just("roofmapnet-state-dict"), "config": json_values}))
@example(meta={"format": "roofmapnet-state-dict"})
@example(meta={"format": "roofmapnet-state-dict", "config": {"model": {"image_size": 2**70}}})
def test_sidecars(folder: Path, meta: Any) -> None:
    # A one-tensor state dict keeps each example cheap: the sidecar is read (and its config validated and a model
    # built from it) before the keys are compared.
    path = folder / "e.pth"
    path.write_bytes(_saved({"detection.x": torch.zeros(1)}))
    side = folder / "e.pth.json"
    side.write_text(json.dumps(meta), encoding="utf-8")
    _load(path)


def test_sidecar_nested_too_deeply(folder: Path) -> None:
    path = folder / "deep.pth"
    path.write_bytes(_saved({"detection.x": torch.zeros(1)}))
    (folder / "deep.pth.json").write_bytes(b"[" * 100_000)  # beyond json's recursion limit
    assert str(_load(path)) == f"{folder / 'deep.pth.json'}: unreadable JSON sidecar (nested too deeply)"
