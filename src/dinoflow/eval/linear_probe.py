"""Linear probes on frozen features, DINOv2-style: a grid of classifiers trained in one pass.

Feature variants: CLS of the last block or the last 4 blocks (all blocks of shallower models), each with or without the average of
the last block's patch tokens appended; every variant gets one linear head per learning rate,
all trained together (SGD, momentum 0.9, no weight decay, cosine schedule). The best head on the
validation split is reported, as in DINOv2's ``eval/linear.py``. Features are those of the
evaluation view (no augmentation), computed once (``features.extract_features``).

The heads of one variant are one (L, C, D) weight: a single matmul serves all L learning rates.
SGD's update is linear in the learning rate, so scaling each head's gradient by its own rate and
stepping with the shared cosine factor is the same optimisation as L separate optimizers
(``tests/eval/test_linear_probe.py`` checks it against that reference).

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


class LinearHeads(nn.Module):
    """L independent linear classifiers on the same (B, D) features → (L, B, C) logits."""

    def __init__(self, heads: int, dim: int, num_classes: int, generator: torch.Generator) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(heads, num_classes, dim, generator=generator) * 0.01)  # DINO's init
        self.bias = nn.Parameter(torch.zeros(heads, 1, num_classes))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.einsum("lcd,bd->lbc", self.weight, features) + self.bias


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
    heads = {v: LinearHeads(len(learning_rates), f.shape[1], num_classes, generator) for v, f in train_features.items()}
    rates = torch.tensor(learning_rates).view(-1, 1, 1) * batch_size / 256
    for module in heads.values():
        for parameter in module.parameters():
            parameter.register_hook(lambda grad: grad * rates)
    optimizer = torch.optim.SGD([p for m in heads.values() for p in m.parameters()], lr=1.0, momentum=0.9)
    total = epochs * math.ceil(len(train_labels) / batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, total)
    for _ in range(epochs):
        order = torch.randperm(len(train_labels), generator=generator)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            labels = train_labels[idx]
            for variant, module in heads.items():
                logits = module(train_features[variant][idx])  # (L, B, C)
                # Summed over heads: each head's gradient is its own mean cross-entropy's.
                F.cross_entropy(logits.flatten(0, 1), labels.repeat(len(learning_rates)), reduction="sum").div(
                    len(idx)
                ).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
    with torch.no_grad():
        return {
            f"{variant}@{lr:g}": float(correct)
            for variant, module in heads.items()
            for lr, correct in zip(
                learning_rates, (module(val_features[variant]).argmax(2) == val_labels).float().mean(1), strict=True
            )
        }
