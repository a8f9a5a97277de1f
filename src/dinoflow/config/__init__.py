"""Pretraining configuration: schema, resolution of presets and overrides, derived values."""

from dinoflow.config.loading import (
    ConfigError,
    load_config_file,
    resolve_config,
    save_config,
    scaled_lr,
    to_dict,
)
from dinoflow.config.schema import PretrainConfig

__all__ = [
    "ConfigError",
    "PretrainConfig",
    "load_config_file",
    "resolve_config",
    "save_config",
    "scaled_lr",
    "to_dict",
]
