"""DINO self-distillation loss on CLS tokens, with EMA centering or Sinkhorn-Knopp.

- [0]: Caron et al., DINO, 2021, https://arxiv.org/abs/2104.14294 (Eq. 2–4, Alg. 1)
- [1]: Oquab et al., DINOv2, 2023, https://arxiv.org/abs/2304.07193 (Sinkhorn-Knopp centering)
"""

from __future__ import annotations

import torch

from dinoflow.losses.centering import SelfDistillationLoss


class DINOLoss(SelfDistillationLoss):
    """Cross-entropy between sharpened, centred teacher and student distributions.

    For every teacher view i (the global crops) and student view v != i, the loss is
    ``-sum_k q_i[k] * log_softmax(s_v / tau_s)[k]``, averaged over the batch and then over the
    pairs. With ``centering="ema"`` the teacher is centred with an EMA of its batch mean
    (all-reduced across ranks), updated *after* the loss, so step t uses the center of step t-1;
    with ``"sinkhorn_knopp"`` the teacher distribution is a balanced assignment instead.

    Args:
        out_dim: number of prototypes K.
        student_temp: tau_s.
        center_momentum: EMA momentum of the center.
        centering: "ema" (DINO) or "sinkhorn_knopp" (DINOv2).
    """

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
        student_logp = self.student_log_probs(student_logits)
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
