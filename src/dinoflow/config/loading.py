"""Resolve a pretraining config: preset ← parameters file ← ``key=value`` overrides.

The same function serves the Kedro ``pretrain`` node and ``python -m dinoflow.train``, so both
read ``conf/base/parameters_pretrain.yml`` the same way. The resolved config is written next
to every checkpoint and logged with every run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pydantic import ValidationError

from dinoflow.atomic import atomic_path
from dinoflow.config.schema import PretrainConfig

# What each recipe changes from the schema defaults; a preset or explicit keys override these.
RECIPES: dict[str, dict[str, Any]] = {
    "dino": {},  # CLS self-distillation with EMA centering (Caron et al. 2021)
    "dinov2": {  # + iBOT masked patches, KoLeo, Sinkhorn-Knopp (Oquab et al. 2023, §4)
        "model": {"layer_scale_init": 1e-5},
        "loss": {"centering": "sinkhorn_knopp", "ibot_weight": 1.0, "koleo_weight": 0.1},
        "optim": {"layer_decay": 0.9, "patch_embed_lr_mult": 0.2, "momentum_teacher": 0.994},
    },
    # A frozen trained teacher, DINO + iBOT (on every patch of the global crops) + KoLeo, Sinkhorn-Knopp
    # (stateless, so the frozen teacher's targets need no centre re-learnt) (Oquab et al. 2023, §5).
    "distill": {
        "loss": {"centering": "sinkhorn_knopp", "ibot_weight": 1.0, "koleo_weight": 0.1},
        "optim": {"layer_decay": 0.9, "patch_embed_lr_mult": 0.2, "momentum_teacher": 0.994},
    },
}


class ConfigError(ValueError):
    """A config value is missing, unknown or of the wrong type; the message names the key."""


def parse_overrides(overrides: Sequence[str]) -> dict[str, Any]:
    """Turn ``["optim.base_lr=1e-3", "crops.local_number=4"]`` into a nested dict (YAML-typed)."""
    malformed = [item for item in overrides if "=" not in item or not item.partition("=")[0].strip()]
    if malformed:
        raise ConfigError(f"override {malformed[0]!r} is not of the form key=value")
    try:
        dotlist = [f"{key.strip()}={value.strip()}" for key, _, value in (item.partition("=") for item in overrides)]
        return OmegaConf.to_container(OmegaConf.from_dotlist(dotlist))
    except OmegaConfBaseException as error:
        raise ConfigError(f"overrides {list(overrides)}: {error}") from None


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; values in ``update`` win, nested mappings are merged, lists replaced."""
    return OmegaConf.to_container(OmegaConf.merge(OmegaConf.create(dict(base)), OmegaConf.create(dict(update))))


def validate(raw: Mapping[str, Any], where: str = "pretrain") -> PretrainConfig:
    """Validate a plain nested dict; errors name the full key, e.g. ``pretrain.optim.base_lr``."""
    try:
        # JSON mode: YAML lists become tuples, ints are accepted for floats, nothing else coerces.
        return PretrainConfig.model_validate_json(json.dumps(raw), strict=True)
    except ValidationError as err:
        lines = [
            f"{where}.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" if e["loc"] else e["msg"] for e in err.errors()
        ]
        raise ConfigError("invalid pretraining config:\n  " + "\n  ".join(lines)) from None


def resolve_config(
    section: Mapping[str, Any],
    presets: Mapping[str, Mapping[str, Any]],
    overrides: Sequence[str] = (),
) -> PretrainConfig:
    """Merge recipe defaults ← the named preset ← explicit keys of ``section`` ← CLI overrides.

    Args:
        section: the ``pretrain`` mapping (``preset`` plus any keys that override it).
        presets: named partial configs (``pretrain_presets`` in the parameters file).
        overrides: ``dotted.key=value`` strings, applied last.
    """
    explicit = deep_merge(section, parse_overrides(overrides))
    name = explicit.get("preset", "custom")
    if name != "custom" and name not in presets:
        raise ConfigError(f"pretrain.preset: unknown preset {name!r}; choose from {sorted(presets)}")
    preset_layer = deep_merge(presets.get(name, {}), explicit)
    recipe = preset_layer.get("recipe", "dino")
    if recipe not in RECIPES:
        raise ConfigError(f"pretrain.recipe: unknown recipe {recipe!r}; choose from {sorted(RECIPES)}")
    merged = deep_merge(RECIPES[recipe], preset_layer)
    merged["preset"] = name
    return validate(merged)


def load_config_file(path: Path, overrides: Sequence[str] = ()) -> PretrainConfig:
    """Load either a parameters file (``pretrain`` + ``pretrain_presets`` keys) or a resolved config."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    if "pretrain" in data:
        return resolve_config(data["pretrain"], data.get("pretrain_presets", {}), overrides)
    return validate(deep_merge(data, parse_overrides(overrides)))


def to_dict(cfg: PretrainConfig) -> dict[str, Any]:
    """Plain, YAML/JSON-serialisable dict (tuples become lists)."""
    return json.loads(cfg.model_dump_json())


def save_config(cfg: PretrainConfig, path: Path) -> Path:
    """The resolved config as YAML, written whole or not at all (``dinoflow.atomic``)."""
    with atomic_path(Path(path), "training config") as tmp:
        tmp.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    return Path(path)


def scaled_lr(base_lr: float, batch_size_per_rank: int, world_size: int) -> float:
    """DINO's linear scaling rule: ``lr = base_lr * total_batch / 256`` (``main_dino.py``)."""
    return base_lr * batch_size_per_rank * world_size / 256.0
