"""Student/teacher pair and the momentum (EMA) teacher update.

- [0]: Caron et al., DINO, 2021, https://arxiv.org/abs/2104.14294 (§3.1, Fig. 6)
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class DINOModel(nn.Module):
    """Backbone + head for one network (student or teacher).

    ``forward`` takes the multi-crop list and runs the backbone once per resolution (crops of
    equal size are concatenated, as DINO's MultiCropWrapper does), then the head once.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, crops: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Args: crops: V tensors (B, 3, S_v, S_v), equal sizes adjacent.

        Returns:
            logits: (V * B, K) head outputs, view-major.
            features: (V * B, D) backbone CLS features.
        """
        features = []
        start = 0
        while start < len(crops):
            end = start
            while end < len(crops) and crops[end].shape[-1] == crops[start].shape[-1]:
                end += 1
            features.append(self.backbone(torch.cat(crops[start:end])))
            start = end
        feats = torch.cat(features)
        return self.head(feats), feats


def make_teacher(student: nn.Module) -> nn.Module:
    """Teacher = frozen deep copy of the student (same initial weights, no gradients)."""
    teacher = copy.deepcopy(student)
    for param in teacher.parameters():
        param.requires_grad = False
    return teacher


@torch.no_grad()
def update_teacher(student: nn.Module, teacher: nn.Module, momentum: float) -> None:
    """θ_t ← m θ_t + (1 − m) θ_s over all parameters, in fused foreach kernels."""
    student_params = [p.detach() for p in student.parameters()]
    teacher_params = list(teacher.parameters())
    torch._foreach_mul_(teacher_params, momentum)
    torch._foreach_add_(teacher_params, student_params, alpha=1.0 - momentum)
