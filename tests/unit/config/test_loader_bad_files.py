"""Config files that are not what they claim: bytes that are not UTF-8, YAML 1.1 booleans as keys (issue 16)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from roofmapnet.config import load_config
from roofmapnet.config.loader import DEFAULT_CONFIG_PATH
from roofmapnet.errors import ConfigError

REPO = Path(__file__).resolve().parents[3]


def _error(path: Path) -> str:
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert len(exc.value.problems) == 1
    (line,) = str(exc.value).splitlines()
    return line


def test_non_utf8_config_is_one_line_error_not_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "random.yaml"
    path.write_bytes(b"io:\n  logdir: runs/\xff\xfe\x00\x81\n")
    assert _error(path) == f"{path}: not a UTF-8 text file (byte 0xff at offset 19); a config is YAML text"


def test_control_characters_are_named(tmp_path: Path) -> None:
    path = tmp_path / "ctl.yaml"
    path.write_bytes(b"io:\n  logdir: a\x01b\n")
    assert _error(path) == f"{path}: invalid YAML (character 16): character #x0001 is not allowed in YAML text"


def test_a_config_written_by_pyyaml_names_the_boolean_key_and_the_fix(tmp_path: Path) -> None:
    # PyYAML (YAML 1.1) reads the unquoted loss key `off` as False and writes it back as `false`.
    data = yaml.safe_load((REPO / DEFAULT_CONFIG_PATH).read_text(encoding="utf-8"))
    assert False in data["loss"]["weights"]
    path = tmp_path / "dumped.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    line = _error(path)
    assert line.startswith(f"{path}: loss.weights: the key false is a boolean, not a name: an unquoted off ")
    assert "PyYAML" in line
    assert line.endswith("write the key as 'off' in quotes")
    # The fix the message names works.
    path.write_text(path.read_text(encoding="utf-8").replace("false: 0.25", "'off': 0.25"), encoding="utf-8")
    assert load_config(path).loss.weights.off == 0.25


def test_boolean_keys_elsewhere_and_other_non_string_keys(tmp_path: Path) -> None:
    path = tmp_path / "on.yaml"
    path.write_text("data:\n  augment:\n    true: false\n", encoding="utf-8")
    line = _error(path)
    assert line.startswith(f"{path}: data.augment: the key true is a boolean, not a name: an unquoted off/on/yes/no")
    path.write_text("io:\n  7: 1\n", encoding="utf-8")
    assert _error(path) == f"{path}: io: the key 7 (int) is not a name"


def test_unquoted_yaml11_words_still_load_as_yaml12(tmp_path: Path) -> None:
    path = tmp_path / "yaml12.yaml"
    path.write_text("loss:\n  weights: {off: 0.5}\ndata:\n  augment: {hflip: false}\n", encoding="utf-8")
    cfg = load_config(path)
    assert cfg.loss.weights.off == 0.5
    assert cfg.data.augment.hflip is False


def test_deep_nesting_and_odd_keys_stay_one_line(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("[" * 1000, encoding="utf-8")
    assert _error(path) == f"{path}: invalid YAML: nested too deeply"
    path.write_text('io:\n  "two\\nlines": 1\n', encoding="utf-8")
    assert _error(path) == f"{path}: io.'two\\nlines': unknown key"
