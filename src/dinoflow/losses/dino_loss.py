"""DINO self-distillation loss on CLS tokens, with EMA centering.

- [0]: Caron et al., DINO, 2021, https://arxiv.org/abs/2104.14294 (Eq. 2–4, Alg. 1)
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


class DINOLoss(nn.Module):
    """Cross-entropy between sharpened, centred teacher and student distributions.

    For every teacher view i (the global crops) and student view v != i, the loss is
    ``-sum_k q_i[k] * log_softmax(s_v / tau_s)[k]``, averaged over the batch and then over the
    pairs. The teacher is centred with an EMA of its batch mean (all-reduced across ranks); the
    center is updated *after* the loss, so step t uses the center of step t-1.

    Args:
        out_dim: number of prototypes K.
        student_temp: tau_s.
        center_momentum: EMA momentum of the center.
    """

    def __init__(
        self, out_dim: int, student_temp: float = 0.1, center_momentum: float = 0.9
    ) -> None:
        super().__init__()
        self.student_temp = student_temp
        self.center_momentum = center_momentum
        self.register_buffer("center", torch.zeros(1, out_dim))

    def teacher_probs(self, teacher_logits: torch.Tensor, teacher_temp: float) -> torch.Tensor:
        """(G * B, K) teacher logits → centred, sharpened probabilities (fp32)."""
        return F.softmax((teacher_logits.float() - self.center) / teacher_temp, dim=-1)

    def forward(
        self,
        student_logits: torch.Tensor,
        teacher_logits: torch.Tensor,
        teacher_temp: float,
        num_student_views: int,
    ) -> torch.Tensor:
        """Args:
            student_logits: (V * B, K), view-major; the first G views are the global crops.
            teacher_logits: (G * B, K), view-major, from the global crops only.
            teacher_temp: tau_t for this iteration (from the schedule).
            num_student_views: V.

        Returns:
            Scalar loss.
        """
        student_logp = F.log_softmax(student_logits.float() / self.student_temp, dim=-1)
        student_views = student_logp.chunk(num_student_views)
        teacher_views = (
            self.teacher_probs(teacher_logits, teacher_temp)
            .detach()
            .chunk(teacher_logits.shape[0] // student_views[0].shape[0])
        )
        total, pairs = student_logits.new_zeros((), dtype=torch.float32), 0
        for i, q in enumerate(teacher_views):
            for v, log_p in enumerate(student_views):
                if v == i:  # the same view seen by both networks carries no signal
                    continue
                total = total + torch.sum(-q * log_p, dim=-1).mean()
                pairs += 1
        self.update_center(teacher_logits)
        return total / pairs

    @torch.no_grad()
    def update_center(self, teacher_logits: torch.Tensor) -> None:
        """center ← m · center + (1 − m) · mean of teacher logits over all ranks."""
        batch_sum = teacher_logits.float().sum(dim=0, keepdim=True)
        count = torch.tensor(float(teacher_logits.shape[0]), device=batch_sum.device)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(batch_sum)
            dist.all_reduce(count)
        self.center.mul_(self.center_momentum).add_(
            batch_sum / count, alpha=1 - self.center_momentum
        )
