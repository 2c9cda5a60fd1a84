"""Shared pieces of the fuzz tests (hypothesis): bounded, deterministic settings and the outcome rule.

Every parser of user input is fuzzed with a fixed number of examples (``derandomize=True``: the same examples on
every run and machine, no example database written) and must either succeed or raise a
:class:`~roofmapnet.errors.RoofMapError` whose message is one non-empty line (a :class:`ConfigError` may hold
several problems, each one line).  Any other exception fails the test; the inputs that once broke a parser stay
as ``@example`` regression cases next to the test.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from roofmapnet.errors import ConfigError, RoofMapError

T = TypeVar("T")


def fuzz(max_examples: int) -> settings:
    """Deterministic, bounded settings: ``max_examples`` fixed examples, no deadline, no database."""
    return settings(
        max_examples=max_examples,
        derandomize=True,
        database=None,
        deadline=None,
        print_blob=False,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


def check_error(exc: RoofMapError) -> None:
    """A user-facing error: one non-empty line (per problem for a :class:`ConfigError`)."""
    lines = exc.problems if isinstance(exc, ConfigError) else [str(exc)]
    assert lines, f"{type(exc).__name__} without a message"
    for line in lines:
        assert line.strip(), f"empty line in {type(exc).__name__}: {exc!r}"
        assert "\n" not in line, f"multi-line message: {line!r}"
        assert "\r" not in line, f"multi-line message: {line!r}"
        assert "Traceback" not in line


def outcome(func: Callable[..., T], *args: Any, **kwargs: Any) -> T | RoofMapError:
    """``func(*args, **kwargs)``, or the :class:`RoofMapError` it raised (checked by :func:`check_error`)."""
    try:
        return func(*args, **kwargs)
    except RoofMapError as exc:
        check_error(exc)
        return exc


@st.composite
def mutated(draw: st.DrawFn, base: bytes, max_edits: int = 8) -> bytes:
    """``base`` with a few random edits: overwritten, inserted or deleted bytes, or a truncation."""
    data = bytearray(base)
    for _ in range(draw(st.integers(1, max_edits))):
        op = draw(st.sampled_from(("set", "insert", "delete", "truncate")))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "set" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete" and data:
            del data[pos : pos + draw(st.integers(1, 16))]
        elif op == "truncate":
            del data[pos:]
    return bytes(data)


#: JSON-like values: what a YAML or JSON file can hold (numbers include nan/inf and huge integers).
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=20,
)
