"""Restricted unpickler: numpy arrays, containers and numbers load; anything that would run code is refused."""

from __future__ import annotations

import os
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roofmapnet.errors import DataError
from roofmapnet.utils.safe_pickle import load_npy, safe_loads
from tests.unit.data.formats._fuzz import result_or_one_line_error


class _Payload:
    """Unpickling this calls ``os.system("touch MARKER")``: it would create a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


class _ExecPayload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


def graph() -> dict[tuple[int, int], list[np.ndarray]]:
    return {(10, 20): [np.array([30, 40]), np.array([10, 60])], (30, 40): [np.array([10, 20])]}


def test_numpy_objects_round_trip(tmp_path: Path) -> None:
    g = graph()
    np.save(tmp_path / "g.npy", g)  # a 0-d object array holding the dict, pickled (protocol 3)
    loaded = load_npy(tmp_path / "g.npy")
    assert loaded.keys() == g.keys()
    for key, value in g.items():
        assert all(np.array_equal(a, b) and a.dtype == b.dtype for a, b in zip(loaded[key], value, strict=True))
    scalars = {(np.float64(1.5), np.float32(2.0)): [np.arange(3, dtype=np.int16)], "s": (1, 2.0, None, True, b"x")}
    for protocol in (2, 4, 5):
        assert repr(safe_loads(pickle.dumps(scalars, protocol=protocol))) == repr(scalars)
    np.save(tmp_path / "plain.npy", np.arange(6.0).reshape(2, 3))  # no pickle at all
    np.testing.assert_array_equal(load_npy(tmp_path / "plain.npy"), np.arange(6.0).reshape(2, 3))
    (tmp_path / "bare.npy").write_bytes(pickle.dumps(g, protocol=2))  # a bare pickle, as np.load accepts
    assert load_npy(tmp_path / "bare.npy").keys() == g.keys()


@pytest.mark.parametrize("payload", [_Payload, _ExecPayload])
def test_malicious_npy_is_refused_and_runs_nothing(tmp_path: Path, payload: type) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.npy"
    arr = np.empty((), dtype=object)
    arr[()] = {(1, 2): [payload(marker)]}
    np.save(evil, arr)
    with pytest.raises(DataError) as info:
        load_npy(evil)
    message = str(info.value)
    assert len(message.splitlines()) == 1
    assert message.startswith(f"{evil}: refused to unpickle (forbidden global ")
    assert "only numpy arrays, tuples, lists, dicts, numbers and strings are allowed" in message
    assert not marker.exists()
    if sys.platform != "win32" or payload is _ExecPayload:  # proof that the payload is live
        np.load(evil, allow_pickle=True)
        assert marker.exists()


def test_damaged_files_give_one_line(tmp_path: Path) -> None:
    cases = {
        "empty.npy": b"",
        "text.npy": b"hello",
        "header.npy": b"\x93NUMPY\x01\x00\x10\x00{'descr': 'O8', 'fortran_order'",
        "truncated.npy": pickle.dumps(graph(), protocol=2)[:30],
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(DataError) as info:
            load_npy(tmp_path / name)
        assert len(str(info.value).splitlines()) == 1
        assert str(info.value).startswith(str(tmp_path / name))


@settings(max_examples=80, deadline=None, derandomize=True)
@given(data=st.binary(max_size=300))
def test_fuzz_any_bytes(data: bytes) -> None:
    for blob in (data, b"\x80\x02" + data):
        result_or_one_line_error(lambda blob=blob: safe_loads(blob))
