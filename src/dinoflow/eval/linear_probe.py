"""Linear probes on frozen features, DINOv2-style: a grid of classifiers trained in one pass.

Feature variants: CLS of the last block or the last 4 blocks (all blocks of shallower models), each with or without the average of
the last block's patch tokens appended; every variant gets one linear head per learning rate,
all trained together (SGD, momentum 0.9, no weight decay, cosine schedule). The best head on the
validation split is reported, as in DINOv2's ``eval/linear.py``. Features are those of the
evaluation view (no augmentation), computed once (``features.extract_features``).

- [0]: Oquab et al., DINOv2, 2023, https://arxiv.org/abs/2304.07193 (App. B.3)
- [1]: Caron et al., DINO, 2021, https://arxiv.org/abs/2104.14294 (App. F.2)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# DINOv2's grid (multiplied by batch / 256 like theirs).
LEARNING_RATES = (1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1)


def train_linear_probes(
    train_features: dict[str, torch.Tensor],
    train_labels: torch.Tensor,
    val_features: dict[str, torch.Tensor],
    val_labels: torch.Tensor,
    num_classes: int,
    epochs: int = 30,
    batch_size: int = 256,
    learning_rates: tuple[float, ...] = LEARNING_RATES,
    seed: int = 0,
) -> dict[str, float]:
    """Train every (variant, lr) head; return each head's val top-1 keyed ``"<variant>@<lr>"``."""
    generator = torch.Generator().manual_seed(seed)
    heads, optimizers = {}, []
    for variant, features in train_features.items():
        for lr in learning_rates:
            head = nn.Linear(features.shape[1], num_classes)
            nn.init.normal_(head.weight, std=0.01)  # DINO's init
            nn.init.zeros_(head.bias)
            heads[(variant, lr)] = head
            optimizers.append(torch.optim.SGD(head.parameters(), lr=lr * batch_size / 256, momentum=0.9))
    steps_per_epoch = math.ceil(len(train_labels) / batch_size)
    total = epochs * steps_per_epoch
    schedulers = [torch.optim.lr_scheduler.CosineAnnealingLR(o, total) for o in optimizers]
    for _ in range(epochs):
        order = torch.randperm(len(train_labels), generator=generator)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            for (variant, _), head in heads.items():
                F.cross_entropy(head(train_features[variant][idx]), train_labels[idx]).backward()
            for optimizer, scheduler in zip(optimizers, schedulers, strict=True):
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                scheduler.step()
    with torch.no_grad():
        return {
            f"{variant}@{lr:g}": float((head(val_features[variant]).argmax(1) == val_labels).float().mean())
            for (variant, lr), head in heads.items()
        }
