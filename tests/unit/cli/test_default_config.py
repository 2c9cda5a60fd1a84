"""Without ``--config`` every command uses the built-in defaults: nothing is picked up from the current directory."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from roofmapnet.cli._common import default_config_path
from roofmapnet.cli.app import app
from roofmapnet.config import RootConfig, load_config


@pytest.fixture
def cwd_with_a_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A current directory whose ``config/config.yaml`` would fail validation if it were read."""
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text("io:\n  bogus_key: 1\nmodel:\n  batch_size: 99\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_library_default_ignores_the_current_directory(cwd_with_a_config: Path) -> None:
    assert default_config_path() is None
    assert load_config() == RootConfig()
    assert load_config().model.batch_size == RootConfig().model.batch_size != 99


@pytest.mark.parametrize(
    "args",
    [
        ["train", "--data-root", "missing-data"],
        ["preprocess", "missing-raw", "out"],
    ],
)
def test_commands_without_config_never_read_the_cwd_config(cwd_with_a_config: Path, args: list[str]) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output  # the missing input, not a config error (exit 2)
    assert "bogus_key" not in result.output
    assert "not found" in result.output
