"""Linear probes on frozen features, DINOv2-style: a grid of classifiers trained in one pass.

Feature variants: CLS of the last block or the last 4 blocks (all blocks of shallower models), each with or without the average of
the last block's patch tokens appended; every variant gets one linear head per learning rate,
all trained together (SGD, momentum 0.9, no weight decay, cosine schedule). The best head on the
validation split is reported, as in DINOv2's ``eval/linear.py``. Features are those of the
evaluation view (no augmentation), computed once (``features.extract_features``).

Every variant is a column range of one feature matrix (``Features.variant_columns``); each
variant's L heads are one (L·C, F_v) weight that reads its columns in place. All weights live in
one flat fp32 buffer, so the SGD update of the whole grid is a few elementwise ops per step, and
the matmuls touch only the columns each head sees (an earlier single (V·L·C, F) weight, zero
outside each head's columns, spent 40% of its matmul work on those zeros). SGD's update is linear
in the learning rate, so scaling each head's gradient by its own rate and stepping with the shared
cosine factor is the same optimisation as V·L separate optimizers (``tests/eval/test_linear_probe.py``
checks it against that reference). The gradients of softmax regression have a closed form, so the
loop needs no autograd. The matmuls run in bf16 by default (features and a bf16 copy of the fp32
weights, as mixed-precision probes do on GPUs); the weights, their momentum and the validation
scores stay fp32.

- [0]: Oquab et al., DINOv2, 2023, https://arxiv.org/abs/2304.07193 (App. B.3)
- [1]: Caron et al., DINO, 2021, https://arxiv.org/abs/2104.14294 (App. F.2)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# DINOv2's grid (multiplied by batch / 256 like theirs).
LEARNING_RATES = (1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1)


def _split(flat: torch.Tensor, shapes: list[tuple[int, int]]) -> list[torch.Tensor]:
    """A flat buffer → its per-variant (L·C, F_v) views."""
    return [part.view(shape) for part, shape in zip(flat.split([r * w for r, w in shapes]), shapes, strict=True)]


def _init_weights(
    variants: dict[str, slice], heads_per_variant: int, num_classes: int, generator: torch.Generator
) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """The flat fp32 buffer of every variant's (L·C, F_v) heads ~ N(0, 0.01²) (DINO's init), and
    the views' shapes."""
    shapes = [(heads_per_variant * num_classes, columns.stop - columns.start) for columns in variants.values()]
    drawn = [torch.randn(heads_per_variant, num_classes, w, generator=generator) * 0.01 for _, w in shapes]
    return torch.cat([d.flatten() for d in drawn]), shapes


def _logits(features: torch.Tensor, columns: list[slice], weights: list[torch.Tensor]) -> torch.Tensor:
    """(B, F) features → (B, ΣH_v·C) logits (no bias), each variant's heads on its own columns."""
    return torch.cat([features[:, c] @ w.T for c, w in zip(columns, weights, strict=True)], dim=1)


def _cross_entropy_gradients(
    weights: list[torch.Tensor],
    bias: torch.Tensor,
    features: torch.Tensor,
    columns: list[slice],
    one_hot: torch.Tensor,
    grad_weights: list[torch.Tensor],
) -> torch.Tensor:
    """Gradients of each head's mean cross-entropy over the batch, in closed form:
    ∂/∂logits = (softmax − one-hot) / B, ∂W_v = (∂logits_v)ᵀ X[:, columns_v], ∂b = Σ_b ∂logits.

    Args:
        weights: per variant (H_v·C, F_v), in the matmul dtype; bias: (ΣH_v·C,) fp32.
        features: (B, F) in the matmul dtype; columns: each variant's columns of them.
        one_hot: (B, C) fp32 labels.
        grad_weights: per variant (H_v·C, F_v) in the matmul dtype, written in place.

    Returns:
        ∂b (ΣH_v·C,) fp32.
    """
    batch, classes = len(features), one_hot.shape[1]
    delta = _logits(features, columns, weights).float().add_(bias).view(batch, -1, classes)  # (B, H, C)
    # Softmax spelt out: over C = 10 classes ``Tensor.softmax`` ran several times slower.
    delta.sub_(delta.amax(dim=2, keepdim=True)).exp_()
    delta.div_(delta.sum(dim=2, keepdim=True)).sub_(one_hot[:, None]).div_(batch)
    delta = delta.view(batch, -1)  # (B, H·C)
    low, row = delta.to(features.dtype), 0
    for c, grad in zip(columns, grad_weights, strict=True):
        torch.mm(low[:, row : row + len(grad)].T, features[:, c], out=grad)
        row += len(grad)
    return delta.sum(0)


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
        matmul_dtype: of the training matmuls (bf16: 1.2x faster than fp32 on AVX-512, 1.5x on AMX);
            torch.float32 reproduces one fp32 optimizer per head.
    """
    generator = torch.Generator().manual_seed(seed)
    heads = len(variants) * len(learning_rates)
    weight, shapes = _init_weights(variants, len(learning_rates), num_classes, generator)
    bias = torch.zeros(heads * num_classes)
    weight_velocity, bias_velocity = torch.zeros_like(weight), torch.zeros_like(bias)
    head_rates = (torch.tensor(learning_rates) * batch_size / 256).repeat_interleave(num_classes)  # (L·C,)
    rates = torch.cat([head_rates[:, None].expand(shape).flatten() for shape in shapes])  # per weight entry
    bias_rates, columns = head_rates.repeat(len(variants)), list(variants.values())
    grad_flat = torch.empty(len(weight), dtype=matmul_dtype)  # the gradient's views write into it
    grad = _split(grad_flat, shapes)
    features, one_hot = train_features.to(matmul_dtype), F.one_hot(train_labels, num_classes).float()
    total, step = epochs * math.ceil(len(train_labels) / batch_size), 0
    for _ in range(epochs):
        order = torch.randperm(len(train_labels), generator=generator)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            cosine = 0.5 * (1 + math.cos(math.pi * step / total))  # CosineAnnealingLR's closed form
            grad_bias = _cross_entropy_gradients(
                _split(weight.to(matmul_dtype), shapes), bias, features.index_select(0, idx), columns,
                one_hot[idx], grad,
            )  # fmt: skip
            weight_velocity.mul_(0.9).addcmul_(grad_flat, rates)
            weight.sub_(weight_velocity, alpha=cosine)
            bias_velocity.mul_(0.9).addcmul_(grad_bias, bias_rates)
            bias.sub_(bias_velocity, alpha=cosine)
            step += 1
    logits = _logits(val_features.float(), columns, _split(weight, shapes))
    correct = logits.add_(bias).view(len(val_labels), heads, num_classes).argmax(2) == val_labels[:, None]
    names = [f"{variant}@{lr:g}" for variant in variants for lr in learning_rates]
    return {name: float(c) for name, c in zip(names, correct.float().mean(0), strict=True)}
