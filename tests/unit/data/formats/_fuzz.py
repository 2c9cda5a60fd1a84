"""Shared check of the reader fuzz tests: a reader either succeeds or raises a one-line ``RoofMapError``."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from roofmapnet.errors import RoofMapError

T = TypeVar("T")


def result_or_one_line_error(call: Callable[[], T]) -> T | None:
    """``call()``'s result, or ``None`` after checking that the ``RoofMapError`` it raised is one line."""
    error: RoofMapError | None = None
    try:
        return call()
    except RoofMapError as exc:
        error = exc
    assert len(str(error).splitlines()) == 1, str(error)
    return None
