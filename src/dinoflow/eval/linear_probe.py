"""Linear probes on frozen features, DINOv2-style: a grid of classifiers trained in one pass.

Feature variants: CLS of the last block or the last 4 blocks (all blocks of shallower models), each with or without the average of
the last block's patch tokens appended; every variant gets one linear head per learning rate,
all trained together (SGD, momentum 0.9, no weight decay, cosine schedule). The best head on the
validation split is reported, as in DINOv2's ``eval/linear.py``. Features are those of the
evaluation view (no augmentation), computed once (``features.extract_features``).

The heads of one variant are one (L, C, D) weight: a single matmul serves all L learning rates.
SGD's update is linear in the learning rate, so scaling each head's gradient by its own rate and
stepping with the shared cosine factor is the same optimisation as L separate optimizers
(``tests/eval/test_linear_probe.py`` checks it against that reference). The gradients of softmax
regression have a closed form, so the loop needs no autograd: two matmuls and a softmax per variant and step.

- [0]: Oquab et al., DINOv2, 2023, https://arxiv.org/abs/2304.07193 (App. B.3)
- [1]: Caron et al., DINO, 2021, https://arxiv.org/abs/2104.14294 (App. F.2)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# DINOv2's grid (multiplied by batch / 256 like theirs).
LEARNING_RATES = (1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1)


def _init_weights(train_features: dict[str, torch.Tensor], heads: int, num_classes: int, generator: torch.Generator):
    """Per variant: (L, C, D) weights ~ N(0, 0.01²) (DINO's init) and (L, 1, C) zero biases."""
    return {
        variant: (torch.randn(heads, num_classes, f.shape[1], generator=generator) * 0.01,
                  torch.zeros(heads, 1, num_classes))
        for variant, f in train_features.items()
    }  # fmt: skip


def _logits(weight: torch.Tensor, bias: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """(L, C, D) heads on (B, D) features → (B, L, C) logits, as one (B, D) x (D, L·C) matmul."""
    heads, classes, dim = weight.shape
    return torch.addmm(bias.view(1, -1), features, weight.view(-1, dim).T).view(-1, heads, classes)


def _cross_entropy_gradients(
    weight: torch.Tensor, bias: torch.Tensor, features: torch.Tensor, one_hot: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of each head's mean cross-entropy over the batch ((B, D) features, (B, C) one-hot
    labels), in closed form: ∂/∂logits = (softmax − one-hot) / B, ∂W = (∂logits)ᵀ X, ∂b = Σ_b ∂logits.
    The softmax is spelt out: over C = 10 classes ``Tensor.softmax`` ran several times slower."""
    delta = _logits(weight, bias, features)
    delta.sub_(delta.amax(dim=2, keepdim=True)).exp_()
    delta.div_(delta.sum(dim=2, keepdim=True)).sub_(one_hot[:, None]).div_(len(features))
    delta = delta.view(len(features), -1)  # (B, L·C)
    return (delta.T @ features).view_as(weight), delta.sum(0).view_as(bias)


@torch.no_grad()
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
    """Train every (variant, lr) head; return each head's val top-1 keyed ``"<variant>@<lr>"``.

    SGD with momentum 0.9 as ``torch.optim.SGD`` does it (v ← 0.9 v + g; θ ← θ − η_t v), with the
    gradients in closed form: at these sizes autograd's bookkeeping, not arithmetic, was the cost
    (``tests/eval/test_linear_probe.py`` checks the result against autograd and one optimizer per head).
    """
    generator = torch.Generator().manual_seed(seed)
    params = _init_weights(train_features, len(learning_rates), num_classes, generator)
    velocity = {v: (torch.zeros_like(w), torch.zeros_like(b)) for v, (w, b) in params.items()}
    rates = torch.tensor(learning_rates).view(-1, 1, 1) * batch_size / 256
    one_hot = F.one_hot(train_labels, num_classes).float()
    total, step = epochs * math.ceil(len(train_labels) / batch_size), 0
    for _ in range(epochs):
        order = torch.randperm(len(train_labels), generator=generator)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            cosine = 0.5 * (1 + math.cos(math.pi * step / total))  # CosineAnnealingLR's closed form
            for variant, (weight, bias) in params.items():
                grads = _cross_entropy_gradients(
                    weight, bias, train_features[variant].index_select(0, idx), one_hot[idx]
                )
                for param, buffer, grad in zip((weight, bias), velocity[variant], grads, strict=True):
                    buffer.mul_(0.9).addcmul_(grad, rates)
                    param.sub_(buffer, alpha=cosine)
            step += 1
    return {
        f"{variant}@{lr:g}": float(correct)
        for variant, (weight, bias) in params.items()
        for lr, correct in zip(
            learning_rates,
            (_logits(weight, bias, val_features[variant]).argmax(2) == val_labels[:, None]).float().mean(0),
            strict=True,
        )
    }
