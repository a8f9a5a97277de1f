"""AdamW with DINO/DINOv2 parameter groups and the per-iteration schedule application.

- [0]: Caron et al., DINO, 2021 (``utils.get_params_groups``: no weight decay on biases and norms)
- [1]: Oquab et al., DINOv2, 2023 (``utils/param_groups.py``: layer-wise lr decay, patch-embed lr
  multiplier, no weight decay on LayerScale)
"""

from __future__ import annotations

import re

import torch
from torch import nn

_EMBEDDING_NAMES = ("cls_token", "reg_token", "pos_embed", "patch_embed", "mask_token")


def layer_id(name: str, num_layers: int) -> int:
    """0 for embeddings, i + 1 for transformer block i, ``num_layers + 1`` for the rest (norm, heads)."""
    block = re.search(r"(?:^|\.)blocks\.(\d+)\.", name)
    if block:
        return int(block.group(1)) + 1
    if any(key in name for key in _EMBEDDING_NAMES):
        return 0
    return num_layers + 1


def parameter_settings(
    name: str, param: torch.Tensor, num_layers: int, layer_decay: float, patch_embed_lr_mult: float
) -> dict:
    """The lr multiplier, weight-decay multiplier and last-layer flag of one parameter."""
    no_decay = name.endswith(".bias") or param.ndim <= 1 or ".gamma" in name  # gamma: LayerScale
    lr_scale = layer_decay ** (num_layers + 1 - layer_id(name, num_layers))
    if "patch_embed" in name:
        lr_scale *= patch_embed_lr_mult
    return {
        "lr_scale": lr_scale,
        "wd_scale": 0.0 if no_decay else 1.0,
        "last_layer": "last_layer" in name,
    }


def param_groups(
    model: nn.Module, num_layers: int, layer_decay: float = 1.0, patch_embed_lr_mult: float = 1.0
) -> list[dict]:
    """Trainable parameters grouped by identical settings (fewer groups = fused foreach kernels)."""
    groups: dict[tuple, dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        settings = parameter_settings(name, param, num_layers, layer_decay, patch_embed_lr_mult)
        key = tuple(settings.values())
        groups.setdefault(key, {"params": [], **settings})["params"].append(param)
    return list(groups.values())


def build_optimizer(
    model: nn.Module, num_layers: int, layer_decay: float = 1.0, patch_embed_lr_mult: float = 1.0
) -> torch.optim.AdamW:
    # lr and weight_decay are overwritten at every step from the schedules.
    groups = param_groups(model, num_layers, layer_decay, patch_embed_lr_mult)
    return torch.optim.AdamW(groups, lr=0.0, weight_decay=0.0, foreach=True)


def apply_schedules(
    optimizer: torch.optim.Optimizer, lr: float, weight_decay: float, last_layer_lr_scale: float
) -> None:
    """Write this iteration's lr / weight decay into every group (a frozen last layer gets lr 0)."""
    for group in optimizer.param_groups:
        freeze = float(last_layer_lr_scale) if group["last_layer"] else 1.0
        group["lr"] = float(lr) * group["lr_scale"] * freeze
        group["weight_decay"] = float(weight_decay) * group["wd_scale"]
