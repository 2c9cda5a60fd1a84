"""Fuzzing ``--set KEY=VALUE``: parsed and validated into a config, or one ConfigError line per problem."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from roofmapnet.cli.train import parse_set_options
from roofmapnet.config import RootConfig, load_config
from roofmapnet.config.schema import RootConfig as Schema
from roofmapnet.errors import ConfigError
from tests.fuzzing import fuzz, outcome

pytestmark = pytest.mark.fuzz

DOTTED = sorted(
    f"{section}.{name}"
    for section, field in Schema.model_fields.items()
    for name in getattr(field.annotation, "model_fields", {})
)
keys = st.sampled_from(DOTTED) | st.text(max_size=12)
raw_values = st.sampled_from(["1", "-1", "0.5", "1e999", "NaN", "true", "null", "[1, 2]", '{"a": 1}', "", "x"])
items = st.builds(
    lambda k, sep, v: f"{k}{sep}{v}", keys, st.sampled_from(["=", "", "=="]), raw_values | st.text(max_size=10)
)


def _apply(values: list[str]) -> RootConfig | ConfigError:
    parsed = outcome(parse_set_options, values)
    if isinstance(parsed, ConfigError):
        return parsed
    assert isinstance(parsed, dict)
    result = outcome(load_config, None, parsed)
    assert isinstance(result, (RootConfig, ConfigError)), result
    return result


@fuzz(150)
@given(values=st.lists(items, max_size=4))
@example(values=["optim.lr=" + "[" * 100_000])  # json's recursion limit
@example(values=["model.image_size=1e999"])
@example(values=["io.logdir.x=1"])  # a path made into a section
@example(values=["a.b\nc=1"])
@example(values=["\n=1"])  # the message showed the newline (found by this test)
def test_set_options(values: list[str]) -> None:
    _apply(values)
