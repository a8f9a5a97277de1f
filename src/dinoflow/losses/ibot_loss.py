"""iBOT masked-patch self-distillation loss.

- [0]: Zhou et al., iBOT, 2022, https://arxiv.org/abs/2111.07832
- [1]: Oquab et al., DINOv2, 2023, https://arxiv.org/abs/2304.07193 (``ibot_patch_loss.py``)
"""

from __future__ import annotations

import torch

from dinoflow.losses.centering import SelfDistillationLoss


class IBOTPatchLoss(SelfDistillationLoss):
    """Cross-entropy between the teacher's view of the *visible* patches and the student's
    prediction at the same, *masked* positions of the global crops.

    Each masked patch is weighted by 1 / (number of masked patches in its image), and the sum is
    divided by the number of global-crop images (masked or not), as in DINOv2.

    Args:
        out_dim: prototypes of the patch head.
        student_temp: tau_s.
        center_momentum: EMA momentum of this loss's own center.
        centering: "ema" or "sinkhorn_knopp".
    """

    def forward(
        self,
        student_logits: torch.Tensor,
        teacher_logits: torch.Tensor,
        masks: torch.Tensor,
        teacher_temp: float,
    ) -> torch.Tensor:
        """Args:
            student_logits: (M, K) at the masked positions, in ``masks[masks]`` order.
            teacher_logits: (M, K) at the same positions, from the unmasked crops.
            masks: (N_images, N_patches) bool, True where the student's patch was masked.
            teacher_temp: tau_t.

        Returns:
            Scalar loss (0 when nothing is masked).
        """
        q = self.teacher_probs(teacher_logits, teacher_temp).detach()
        per_patch = torch.sum(-q * self.student_log_probs(student_logits), dim=-1)
        per_image_count = masks.sum(dim=1, keepdim=True).clamp(min=1).expand_as(masks)[masks]
        loss = (per_patch / per_image_count).sum() / masks.shape[0]
        self.update_center(teacher_logits)
        return loss
