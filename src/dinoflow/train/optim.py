"""AdamW with DINO's parameter groups and the per-iteration schedule application."""

from __future__ import annotations

import torch
from torch import nn


def param_groups(model: nn.Module) -> list[dict]:
    """Split parameters: biases and 1-D tensors (norms) get no weight decay (DINO
    ``utils.get_params_groups``); the prototype layer gets its own group so it can be frozen.
    """
    groups = {
        "decay": {"params": [], "wd_scale": 1.0, "last_layer": False},
        "no_decay": {"params": [], "wd_scale": 0.0, "last_layer": False},
        "last_layer": {"params": [], "wd_scale": 1.0, "last_layer": True},
    }
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if "last_layer" in name:
            key = "last_layer"
        elif name.endswith(".bias") or param.ndim <= 1:
            key = "no_decay"
        else:
            key = "decay"
        groups[key]["params"].append(param)
    return [g for g in groups.values() if g["params"]]


def build_optimizer(model: nn.Module) -> torch.optim.AdamW:
    # lr and weight_decay are overwritten at every step from the schedules.
    return torch.optim.AdamW(param_groups(model), lr=0.0, weight_decay=0.0, foreach=True)


def apply_schedules(
    optimizer: torch.optim.Optimizer, lr: float, weight_decay: float, last_layer_lr_scale: float
) -> None:
    """Write this iteration's lr / weight decay into every group."""
    for group in optimizer.param_groups:
        group["lr"] = float(lr) * (float(last_layer_lr_scale) if group["last_layer"] else 1.0)
        group["weight_decay"] = float(weight_decay) * group["wd_scale"]
