"""Fuzzing the config loader: bytes -> YAML -> schema; any input loads or is a one-line ConfigError per problem."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from roofmapnet.config import RootConfig, load_config
from roofmapnet.config.loader import DEFAULT_CONFIG_PATH
from roofmapnet.errors import ConfigError
from tests.fuzzing import fuzz, json_values, mutated, outcome

pytestmark = pytest.mark.fuzz

REPO = Path(__file__).resolve().parents[3]
SHIPPED = (REPO / DEFAULT_CONFIG_PATH).read_bytes()


def _keys(model: Any) -> dict[str, Any]:
    """Field name -> nested model (or None) of a pydantic model, for schema-shaped inputs."""
    out: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        ann = field.annotation
        out[name] = ann if isinstance(ann, type) and hasattr(ann, "model_fields") else None
    return out


def _schema_shaped(model: Any, depth: int = 0) -> st.SearchStrategy[Any]:
    """Mappings whose keys are mostly real field names (plus misspellings) and whose values are anything."""
    fields = _keys(model)
    names = st.sampled_from(sorted(fields)) | st.text(max_size=6)

    def value_for(name: str) -> st.SearchStrategy[Any]:
        sub = fields.get(name)
        if sub is not None and depth < 3:
            return _schema_shaped(sub, depth + 1) | json_values
        return json_values

    return st.lists(names.flatmap(lambda n: st.tuples(st.just(n), value_for(n))), max_size=6).map(dict)


@pytest.fixture(scope="module")
def cfg_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-config") / "config.yaml"


def _load(path: Path, data: bytes) -> RootConfig | ConfigError:
    path.write_bytes(data)
    result = outcome(load_config, path)
    assert isinstance(result, (RootConfig, ConfigError)), result
    return result


@fuzz(150)
@given(data=st.binary(max_size=300))
@example(data=b"io:\n  logdir: \xff\xfe")  # not UTF-8: was a UnicodeDecodeError traceback (issue 16)
@example(data=b"a: \x01")  # a character YAML forbids (ReaderError without a problem mark)
@example(data=b"[" * 1000)  # nesting deep enough to exhaust the recursive YAML composer
@example(data=b"- 1\n- 2\n")  # a list, not a mapping of sections
def test_random_bytes(cfg_file: Path, data: bytes) -> None:
    _load(cfg_file, data)


@fuzz(150)
@given(data=mutated(SHIPPED))
def test_mutated_shipped_config(cfg_file: Path, data: bytes) -> None:
    _load(cfg_file, data)


@fuzz(150)
@given(tree=_schema_shaped(RootConfig))
@example(tree={"loss": {"weights": {False: 0.25}}})  # PyYAML's `off` (issue 16)
@example(tree={"io": {"two\nlines": 1}})  # a key that would split the message
@example(tree={"model": {"image_size": 2**70}})
def test_schema_shaped_yaml(cfg_file: Path, tree: dict[str, Any]) -> None:
    # safe_dump writes YAML 1.1 (as PyYAML users' tools do): booleans as keys, quoted "off", ...
    result = _load(cfg_file, yaml.safe_dump(tree, allow_unicode=True).encode("utf-8"))
    if isinstance(result, ConfigError):
        assert all(p.startswith(f"{cfg_file}: ") for p in result.problems)
