"""Training-health signals that reveal the two DINO collapse modes early.

- uniform collapse: every teacher output is flat (entropy → ln K, loss → ln K);
- dimensional collapse: all samples pick the same prototype (batch-mean entropy → 0).
- [0]: Caron et al., DINO, 2021, https://arxiv.org/abs/2104.14294 (§5.3, Fig. 7)
"""

from __future__ import annotations

import logging
import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.distributed.tensor import DTensor

from dinoflow.train.sharding import local

# Thresholds of the collapse flags, on entropies normalised by ln K.
UNIFORM_ENTROPY = 0.98
ONE_PROTOTYPE_BATCH_ENTROPY = 0.05

log = logging.getLogger(__name__)


@torch.no_grad()
def teacher_health(teacher_probs: torch.Tensor, teacher_features: torch.Tensor, loss_dino: float) -> dict[str, float]:
    """Args:
        teacher_probs: (N, K) centred, sharpened teacher distributions.
        teacher_features: (N, D) teacher backbone CLS features.
        loss_dino: this step's DINO loss.

    Returns:
        teacher_entropy: mean per-sample entropy / ln K (1 = uniform collapse).
        teacher_batch_entropy: entropy of the batch-mean distribution / ln K (0 = one prototype).
        feature_std: mean per-dimension std of L2-normalised features (0 = constant features).
        loss_gap_to_ln_k: ln K − DINO loss (→ 0 as outputs go uniform).
        collapse_uniform, collapse_one_prototype: 1.0 when the flag is raised, else 0.0.
    """
    log_k = math.log(teacher_probs.shape[1])
    p = teacher_probs.float().clamp_min(1e-12)
    per_sample = -(p * p.log()).sum(1).mean() / log_k
    mean_p = p.mean(0)
    batch = -(mean_p * mean_p.log()).sum() / log_k
    std = F.normalize(teacher_features.float(), dim=-1).std(0).mean()
    return {
        "teacher_entropy": float(per_sample),
        "teacher_batch_entropy": float(batch),
        "feature_std": float(std),
        "loss_gap_to_ln_k": log_k - loss_dino,
        "collapse_uniform": float(per_sample > UNIFORM_ENTROPY),
        "collapse_one_prototype": float(batch < ONE_PROTOTYPE_BATCH_ENTROPY),
    }


def warn_on_collapse(metrics: dict[str, float], step: int) -> None:
    if metrics["collapse_uniform"]:
        log.warning(
            "step %d: teacher outputs are uniform (collapse): lower the teacher temperature or raise loss.koleo_weight",
            step,
        )
    if metrics["collapse_one_prototype"]:
        log.warning(
            "step %d: every image maps to one prototype (collapse): check loss.center_momentum / loss.centering",
            step,
        )


@torch.no_grad()
def clip_gradients(parameters, max_norm: float) -> float:
    """DINO's per-parameter clipping (``utils.clip_gradients``); returns the global grad norm."""
    sharded_grads = [p.grad for p in parameters if p.grad is not None]
    if not sharded_grads:
        return 0.0
    grads = [local(g) for g in sharded_grads]  # FSDP: this rank's shards, scaled in place below
    norms = torch._foreach_norm(grads)
    if any(isinstance(g, DTensor) for g in sharded_grads):
        squares = torch.stack(norms) ** 2  # each parameter's norm over all of its shards
        dist.all_reduce(squares)
        norms = list(squares.sqrt())
    if max_norm > 0:
        for grad, norm in zip(grads, norms, strict=True):
            grad.mul_((max_norm / (norm + 1e-6)).clamp(max=1.0))
    return float(torch.linalg.vector_norm(torch.stack(norms)))
