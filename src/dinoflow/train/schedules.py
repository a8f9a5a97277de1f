"""Per-iteration schedules, precomputed as arrays indexed by the global iteration.

Resuming at iteration i continues exactly on schedule because nothing here has state.
- [0]: Caron et al., DINO, 2021, https://arxiv.org/abs/2104.14294 (``utils.cosine_scheduler``)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def cosine_schedule(
    base: float, final: float, total_iters: int, warmup_iters: int = 0, warmup_start: float = 0.0
) -> np.ndarray:
    """Linear warmup ``warmup_start → base`` then a half-cosine ``base → final``.

    Returns:
        (total_iters,) float64; entry i is the value at iteration i.
    """
    warmup_iters = min(warmup_iters, total_iters)
    warmup = np.linspace(warmup_start, base, warmup_iters, endpoint=False)
    steps = np.arange(total_iters - warmup_iters)
    denom = max(len(steps), 1)
    cosine = final + 0.5 * (base - final) * (1 + np.cos(np.pi * steps / denom))
    return np.concatenate([warmup, cosine])


def warmup_then_constant(start: float, end: float, total_iters: int, warmup_iters: int) -> np.ndarray:
    """Linear ``start → end`` over ``warmup_iters`` then constant (DINO's teacher temperature)."""
    warmup_iters = min(warmup_iters, total_iters)
    return np.concatenate([np.linspace(start, end, warmup_iters), np.full(total_iters - warmup_iters, end)])


@dataclass(frozen=True)
class Schedules:
    """Every per-step quantity of a run, each of shape (total_iters,)."""

    lr: np.ndarray
    weight_decay: np.ndarray
    momentum: np.ndarray
    teacher_temp: np.ndarray
    last_layer_lr_scale: np.ndarray  # 0 while the prototype layer is frozen, else 1

    @property
    def total_iters(self) -> int:
        return len(self.lr)


def build_schedules(
    *,
    peak_lr: float,
    min_lr: float,
    weight_decay: float,
    weight_decay_end: float,
    momentum_teacher: float,
    momentum_teacher_end: float,
    warmup_teacher_temp: float,
    teacher_temp: float,
    epochs: int,
    iters_per_epoch: int,
    warmup_epochs: int,
    warmup_teacher_temp_epochs: int,
    freeze_last_layer_epochs: int,
    total_iters: int | None = None,
) -> Schedules:
    """The run's schedules over ``epochs * iters_per_epoch`` iterations, or over ``total_iters``
    when a time budget fixed that count: then every phase keeps its share of the run (a warm-up of
    1 of 12 epochs stays 1/12 of the iterations), so all schedules still end at the last step."""
    nominal = epochs * iters_per_epoch
    total = nominal if total_iters is None else total_iters

    def iters(phase_epochs: int) -> int:
        return round(phase_epochs * iters_per_epoch * total / nominal)

    frozen = np.arange(total) < iters(freeze_last_layer_epochs)
    return Schedules(
        lr=cosine_schedule(peak_lr, min_lr, total, iters(warmup_epochs)),
        weight_decay=cosine_schedule(weight_decay, weight_decay_end, total),
        momentum=cosine_schedule(momentum_teacher, momentum_teacher_end, total),
        teacher_temp=warmup_then_constant(warmup_teacher_temp, teacher_temp, total, iters(warmup_teacher_temp_epochs)),
        last_layer_lr_scale=np.where(frozen, 0.0, 1.0),
    )
