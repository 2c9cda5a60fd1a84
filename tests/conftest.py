"""Shared fixtures: the tiny test config and a tiny synthetic dataset made with the project's own tools."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from roofmapnet.config import RootConfig, load_config

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / "config" / "presets" / "tiny.yaml"


@pytest.fixture(scope="session")
def tiny_config_path() -> Path:
    """Path of the tiny model config (64² input, 16² heatmaps)."""
    return TINY_CONFIG


@pytest.fixture(scope="session")
def tiny_cfg() -> RootConfig:
    """The tiny model config, validated."""
    return load_config(TINY_CONFIG)


@pytest.fixture(scope="session")
def tiny_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A raw synthetic dataset (``roofmap synth`` output): 6 train, 4 valid, 2 test images of 128²."""
    from roofmapnet.data.synth import generate_dataset

    out = tmp_path_factory.mktemp("raw")
    generate_dataset(out, counts={"train": 6, "valid": 4, "test": 2}, image_size=128, seed=7, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_data(tiny_raw: Path, tmp_path_factory: pytest.TempPathFactory, tiny_cfg: RootConfig) -> Path:
    """``tiny_raw`` preprocessed for the tiny config (64² images, 16² heatmaps)."""
    from roofmapnet.data.preprocess import PreprocessOptions, preprocess

    out = tmp_path_factory.mktemp("data")
    options = PreprocessOptions(image_size=tiny_cfg.model.image_size, heatmap_size=tiny_cfg.model.heatmap_size)
    summary = preprocess(tiny_raw, out, options)
    assert summary.ok
    return out


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One intra-op thread for a module of tiny-model tests (``pytestmark = pytest.mark.usefixtures("one_thread")``).

    Tiny models run fastest on one thread: no OpenMP spinning, and no oversubscription of the CI machine's two
    shared cores, which made such runs up to 10× slower.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
