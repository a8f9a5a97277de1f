"""Teacher-side normalisation that prevents collapse: Sinkhorn-Knopp (DINOv2) as an
alternative to DINO's EMA centering (which lives in each loss with its center buffer).

- [0]: Caron et al., SwAV, 2020, https://arxiv.org/abs/2006.09882 (Sinkhorn-Knopp assignment)
- [1]: Oquab et al., DINOv2, 2023, https://arxiv.org/abs/2304.07193 (§4, ``dino_clstoken_loss.py``)
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

CENTERINGS = ("ema", "sinkhorn_knopp", "none")  # "none": the DINO paper's ablation only


def _all_reduce(value: torch.Tensor, op=None) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(value, op=op or dist.ReduceOp.SUM)
    return value


@torch.no_grad()
def sinkhorn_knopp(teacher_logits: torch.Tensor, teacher_temp: float, iterations: int = 3) -> torch.Tensor:
    """Balanced soft assignment of samples to prototypes, across all ranks.

    Alternately rescales rows (prototypes) to total mass 1/K and columns (samples) to 1/B, where
    B counts the samples of every rank; each returned row is a distribution over prototypes.

    Args:
        teacher_logits: (B_local, K).
        teacher_temp: tau_t.

    Returns:
        (B_local, K) float32, rows summing to 1.
    """
    logits = teacher_logits.float() / teacher_temp
    # Subtracting one global constant leaves the result unchanged and keeps exp() finite.
    peak = _all_reduce(logits.max().clone(), dist.ReduceOp.MAX if dist.is_initialized() else None)
    q = torch.exp(logits - peak).t()  # Q is K-by-B, as in the paper's notation
    num_prototypes = q.shape[0]
    num_samples = _all_reduce(torch.tensor(float(q.shape[1]), device=q.device))
    q /= _all_reduce(q.sum())
    for _ in range(iterations):
        q /= _all_reduce(q.sum(dim=1, keepdim=True))  # each prototype gets total mass 1/K
        q /= num_prototypes
        q /= q.sum(dim=0, keepdim=True)  # each sample gets total mass 1/B
        q /= num_samples
    return (q * num_samples).t()


class SelfDistillationLoss(nn.Module):
    """Base of the DINO and iBOT losses: student temperature, and teacher logits turned into
    targets by EMA centering + sharpening (DINO) or Sinkhorn-Knopp (DINOv2).

    Holds the EMA center buffer (1, K).

    Args:
        out_dim: prototypes K.
        student_temp: tau_s.
        center_momentum: EMA momentum of the center.
        centering: "ema", "sinkhorn_knopp" or "none" (the DINO paper's collapse ablation).
    """

    def __init__(
        self, out_dim: int, student_temp: float = 0.1, center_momentum: float = 0.9, centering: str = "ema"
    ) -> None:
        super().__init__()
        if centering not in CENTERINGS:
            raise ValueError(f"centering must be one of {CENTERINGS}, got {centering!r}")
        self.student_temp = student_temp
        self.center_momentum = center_momentum
        self.centering = centering
        self.register_buffer("center", torch.zeros(1, out_dim))

    def student_log_probs(self, student_logits: torch.Tensor) -> torch.Tensor:
        """(N, K) student logits → (N, K) float32 log-probabilities at tau_s."""
        return F.log_softmax(student_logits.float() / self.student_temp, dim=-1)

    def teacher_probs(self, teacher_logits: torch.Tensor, teacher_temp: float) -> torch.Tensor:
        """(N, K) teacher logits → (N, K) float32 target distributions."""
        if self.centering == "sinkhorn_knopp":
            return sinkhorn_knopp(teacher_logits, teacher_temp)
        center = self.center if self.centering == "ema" else 0.0
        return F.softmax((teacher_logits.float() - center) / teacher_temp, dim=-1)

    @torch.no_grad()
    def update_center(self, teacher_logits: torch.Tensor) -> None:
        """center ← m · center + (1 − m) · mean teacher logits over all ranks (EMA mode only)."""
        if self.centering != "ema":
            return
        batch_sum = teacher_logits.float().sum(dim=0, keepdim=True)
        count = _all_reduce(torch.tensor(float(teacher_logits.shape[0]), device=batch_sum.device))
        if count.item() == 0:
            return
        self.center.mul_(self.center_momentum).add_(_all_reduce(batch_sum) / count, alpha=1 - self.center_momentum)
