"""Linear probes on frozen features, DINOv2-style: a grid of classifiers trained in one pass.

Feature variants: CLS of the last block or the last 4 blocks (all blocks of shallower models), each with or without the average of
the last block's patch tokens appended; every variant gets one linear head per learning rate,
all trained together (SGD, momentum 0.9, no weight decay, cosine schedule). The best head on the
validation split is reported, as in DINOv2's ``eval/linear.py``. Features are those of the
evaluation view (no augmentation), computed once (``features.extract_features``).

Every variant is a column range of one feature matrix, so all V·L heads (V variants, L learning
rates) are one (V·L·C, F) weight whose entries outside a head's columns are zero and stay zero
(their gradient is masked): one matmul per step serves the whole grid, for 5/3 the arithmetic of
separate per-variant matmuls (with 4 blocks). In fp32 that made it no faster than one matmul per
variant; in bf16 (the default below) it is 1.5x faster than in fp32 (``benchmarks/eval.py``),
as the steps' many small ops shrink to a few. SGD's update is linear in
the learning rate, so scaling each head's gradient by its own rate and stepping with the shared
cosine factor is the same optimisation as V·L separate optimizers (``tests/eval/test_linear_probe.py``
checks it against that reference). The gradients of softmax regression have a closed form, so the
loop needs no autograd. The two matmuls of a step run in bf16 by default (features and a bf16
copy of the fp32 weights, as mixed-precision probes do on GPUs); the weights, their momentum and
the validation scores stay fp32.

- [0]: Oquab et al., DINOv2, 2023, https://arxiv.org/abs/2304.07193 (App. B.3)
- [1]: Caron et al., DINO, 2021, https://arxiv.org/abs/2104.14294 (App. F.2)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# DINOv2's grid (multiplied by batch / 256 like theirs).
LEARNING_RATES = (1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1)


def _init_weights(
    variants: dict[str, slice], width: int, heads: int, num_classes: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(V·L·C, F) weights, each variant's L heads ~ N(0, 0.01²) (DINO's init) on its own columns and
    zero elsewhere, and the (V·L·C, F) bool mask of those zeros."""
    weight = torch.zeros(len(variants) * heads * num_classes, width)
    outside = torch.ones_like(weight, dtype=torch.bool)
    for v, columns in enumerate(variants.values()):
        rows = slice(v * heads * num_classes, (v + 1) * heads * num_classes)
        drawn = torch.randn(heads, num_classes, columns.stop - columns.start, generator=generator) * 0.01
        weight[rows, columns] = drawn.view(heads * num_classes, -1)
        outside[rows, columns] = False
    return weight, outside


def _cross_entropy_gradients(
    weight: torch.Tensor, bias: torch.Tensor, features: torch.Tensor, one_hot: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of each head's mean cross-entropy over the batch, in closed form:
    ∂/∂logits = (softmax − one-hot) / B, ∂W = (∂logits)ᵀ X, ∂b = Σ_b ∂logits.

    Args:
        weight: (H·C, F) heads in the matmul dtype; bias: (H·C,) fp32.
        features: (B, F) in the matmul dtype; one_hot: (B, C) fp32 labels.

    Returns:
        ∂W (H·C, F) in the matmul dtype, ∂b (H·C,) fp32.
    """
    classes = one_hot.shape[1]
    delta = (features @ weight.T).float().add_(bias).view(len(features), -1, classes)  # (B, H, C) logits
    # Softmax spelt out: over C = 10 classes ``Tensor.softmax`` ran several times slower.
    delta.sub_(delta.amax(dim=2, keepdim=True)).exp_()
    delta.div_(delta.sum(dim=2, keepdim=True)).sub_(one_hot[:, None]).div_(len(features))
    delta = delta.view(len(features), -1)  # (B, H·C)
    return delta.to(features.dtype).T @ features, delta.sum(0)


@torch.no_grad()
def train_linear_probes(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    val_features: torch.Tensor,
    val_labels: torch.Tensor,
    num_classes: int,
    variants: dict[str, slice],
    epochs: int = 30,
    batch_size: int = 256,
    learning_rates: tuple[float, ...] = LEARNING_RATES,
    seed: int = 0,
    matmul_dtype: torch.dtype = torch.bfloat16,
) -> dict[str, float]:
    """Train every (variant, lr) head; return each head's val top-1 keyed ``"<variant>@<lr>"``.

    SGD with momentum 0.9 as ``torch.optim.SGD`` does it (v ← 0.9 v + g; θ ← θ − η_t v), with the
    gradients in closed form: at these sizes autograd's bookkeeping, not arithmetic, was the cost.

    Args:
        train_features: (N, F); val_features: (M, F); labels int64 in [0, C).
        variants: name → the columns of the features that variant's heads see
            (``Features.variant_columns``).
        matmul_dtype: of the training matmuls (bf16: 1.5x faster on CPUs with bf16 units);
            torch.float32 reproduces one fp32 optimizer per head.
    """
    generator = torch.Generator().manual_seed(seed)
    heads = len(variants) * len(learning_rates)
    weight, outside = _init_weights(variants, train_features.shape[1], len(learning_rates), num_classes, generator)
    bias = torch.zeros(len(weight))
    weight_velocity, bias_velocity = torch.zeros_like(weight), torch.zeros_like(bias)
    rates = (torch.tensor(learning_rates) * batch_size / 256).repeat(len(variants)).repeat_interleave(num_classes)
    features, one_hot = train_features.to(matmul_dtype), F.one_hot(train_labels, num_classes).float()
    total, step = epochs * math.ceil(len(train_labels) / batch_size), 0
    for _ in range(epochs):
        order = torch.randperm(len(train_labels), generator=generator)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            cosine = 0.5 * (1 + math.cos(math.pi * step / total))  # CosineAnnealingLR's closed form
            grad_weight, grad_bias = _cross_entropy_gradients(
                weight.to(matmul_dtype), bias, features.index_select(0, idx), one_hot[idx]
            )
            weight_velocity.mul_(0.9).addcmul_(grad_weight.masked_fill_(outside, 0), rates[:, None])
            weight.sub_(weight_velocity, alpha=cosine)
            bias_velocity.mul_(0.9).addcmul_(grad_bias, rates)
            bias.sub_(bias_velocity, alpha=cosine)
            step += 1
    logits = torch.addmm(bias, val_features.float(), weight.T).view(len(val_labels), heads, num_classes)
    correct = (logits.argmax(2) == val_labels[:, None]).float().mean(0)
    names = [f"{variant}@{lr:g}" for variant in variants for lr in learning_rates]
    return {name: float(c) for name, c in zip(names, correct, strict=True)}
