"""Configuration: seed defaults, one-line errors, overrides, path resolution."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from roofmapnet.config import RootConfig, load_config
from roofmapnet.errors import ConfigError

REPO = Path(__file__).resolve().parents[3]
CONFIG = REPO / "config" / "config.yaml"


def test_shipped_config_equals_schema_defaults_and_seed() -> None:
    cfg = load_config(CONFIG)
    assert cfg.model_dump(exclude={"io"}) == RootConfig().model_dump(exclude={"io"})
    # The seed document's values.
    assert cfg.io.num_workers == 8
    assert cfg.io.validation_interval == 1000
    assert cfg.io.logdir == REPO / "logs"
    m = cfg.model
    assert (m.batch_size, m.batch_size_eval, m.depth, m.num_stacks, m.num_blocks) == (8, 1, 4, 2, 1)
    assert (m.n_stc_posl, m.n_stc_negl, m.n_dyn_junc, m.dim_loi, m.dim_fc) == (300, 40, 300, 128, 1024)
    o = cfg.optim
    assert (o.name, o.lr, o.weight_decay, o.amsgrad, o.max_epoch, o.lr_decay_epoch) == ("Adam", 1e-3, 0, True, 30, 10)
    w = cfg.loss.weights
    assert (w.gauss, w.qcc, w.lhr, w.off, w.lv, w.sf) == (1.0, 1.0, 1.0, 0.25, 2.0, 0.5)
    assert m.image.mean == (109.730, 103.832, 98.681)


def test_config_is_immutable() -> None:
    cfg = RootConfig()
    with pytest.raises(Exception, match="frozen"):
        cfg.model.batch_size = 3  # type: ignore[misc]


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "cfg.yaml"
    p.write_text(text)
    return p


def test_bad_value_one_line_naming_file_and_field(tmp_path: Path) -> None:
    p = _write(tmp_path, "model:\n  batch_size: 0\n")
    with pytest.raises(ConfigError) as info:
        load_config(p)
    assert info.value.problems == [f"{p}: model.batch_size: Input should be greater than 0"]
    assert info.value.exit_code == 2


def test_unknown_key_is_reported_with_hint(tmp_path: Path) -> None:
    p = _write(tmp_path, "optim:\n  lr_decay_epochs: 3\n")
    with pytest.raises(ConfigError) as info:
        load_config(p)
    assert info.value.problems == [f"{p}: optim.lr_decay_epochs: unknown key (did you mean 'lr_decay_epoch'?)"]


def test_several_problems_each_on_a_line(tmp_path: Path) -> None:
    p = _write(tmp_path, "model:\n  batch_size: -1\n  dim_fc: abc\n")
    with pytest.raises(ConfigError) as info:
        load_config(p)
    assert len(info.value.problems) == 2
    assert all(line.startswith(f"{p}: model.") for line in info.value.problems)


def test_overrides_apply_and_are_validated(tmp_path: Path) -> None:
    cfg = load_config(CONFIG, {"model.batch_size": 2, "optim.max_epoch": 3, "io.num_workers": None})
    assert cfg.model.batch_size == 2
    assert cfg.optim.max_epoch == 3
    assert cfg.io.num_workers == 8
    with pytest.raises(ConfigError) as info:
        load_config(CONFIG, {"optim.lr": -1.0})
    assert info.value.problems == ["command line: optim.lr: Input should be greater than 0"]


def test_relative_paths_resolve_against_config_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    p = tmp_path / "sub" / "c.yaml"
    p.write_text("io:\n  logdir: runs/x\n  datadir: ../data\n")
    cfg = load_config(p)
    assert cfg.io.logdir == tmp_path / "sub" / "runs" / "x"
    assert cfg.io.datadir == tmp_path / "data"


def test_yaml_off_key_is_a_string_and_scientific_floats_parse(tmp_path: Path) -> None:
    p = _write(tmp_path, "loss:\n  weights: {off: 0.5}\noptim:\n  lr: 1e-4\n")
    cfg = load_config(p)
    assert cfg.loss.weights.off == 0.5
    assert cfg.optim.lr == pytest.approx(1e-4)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("- a\n- b\n", "the top level must be a mapping"), ("model: [\n", "invalid YAML")],
)
def test_malformed_yaml(tmp_path: Path, text: str, expected: str) -> None:
    p = _write(tmp_path, text)
    with pytest.raises(ConfigError, match=expected):
        load_config(p)


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config("does/not/exist.yaml")


def test_model_constraints(tmp_path: Path) -> None:
    p = _write(tmp_path, "model:\n  image_size: 512\n  heatmap_size: 100\n")
    with pytest.raises(ConfigError, match="image_size"):
        load_config(p)


def test_cli_version() -> None:
    from roofmapnet import __version__
    from roofmapnet.cli.app import app

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_atomic_writes_leave_no_temporary_and_use_normal_permissions(tmp_path: Path) -> None:
    from roofmapnet.utils.io import FILE_MODE, atomic_path, atomic_write_text

    def fail_midway() -> None:
        with atomic_path(tmp_path / "broken.png") as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError

    target = tmp_path / "out.json"
    atomic_write_text(target, "{}")
    assert target.read_text() == "{}"
    assert (target.stat().st_mode & 0o777) == FILE_MODE
    with pytest.raises(RuntimeError):
        fail_midway()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]
