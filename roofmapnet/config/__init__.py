"""Validated, immutable configuration (pydantic v2) and its YAML loader."""

from roofmapnet.config.loader import DEFAULT_CONFIG_PATH, config_from_dict, dump_config, load_config, override_config
from roofmapnet.config.schema import (
    AugmentConfig,
    DataConfig,
    ImageConfig,
    IOConfig,
    LossConfig,
    LossWeights,
    ModelConfig,
    OptimConfig,
    RootConfig,
)

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "AugmentConfig",
    "DataConfig",
    "IOConfig",
    "ImageConfig",
    "LossConfig",
    "LossWeights",
    "ModelConfig",
    "OptimConfig",
    "RootConfig",
    "config_from_dict",
    "dump_config",
    "load_config",
    "override_config",
]
