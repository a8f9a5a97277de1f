"""Student/teacher pair and the momentum (EMA) teacher update.

- [0]: Caron et al., DINO, 2021, https://arxiv.org/abs/2104.14294 (§3.1, Fig. 6)
"""

from __future__ import annotations

import copy
from typing import NamedTuple

import torch
from torch import nn
from torch.distributed.tensor import DTensor

from dinoflow.models.backbone import backbone_tokens


class DINOOutput(NamedTuple):
    cls_logits: torch.Tensor  # (V * B, K), view-major
    cls_features: torch.Tensor  # (V * B, D) backbone CLS tokens
    patch_logits: torch.Tensor | None  # (M, K') at the masked positions of the global crops


class DINOModel(nn.Module):
    """Backbone + heads for one network (student or teacher).

    ``forward`` takes the multi-crop list and runs the backbone once per resolution (crops of
    equal size are concatenated, as DINO's MultiCropWrapper does), then the head once. With
    ``masks`` (iBOT), the first group (the global crops) also yields patch logits at the masked
    positions; ``apply_masks=True`` (student) replaces those patches by the mask token,
    ``False`` (teacher) lets the network see them.

    Args:
        backbone: timm ViT.
        head: DINO head on CLS tokens.
        patch_head: iBOT head on patch tokens; ``head`` itself when shared, None without iBOT.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, patch_head: nn.Module | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.patch_head = patch_head if patch_head is not head else None
        self.shares_head = patch_head is head
        if patch_head is not None:
            self.mask_token = nn.Parameter(torch.zeros(1, backbone.embed_dim))

    def forward(
        self, crops: list[torch.Tensor], masks: torch.Tensor | None = None, apply_masks: bool = True
    ) -> DINOOutput:
        """Args:
        crops: V tensors (B, 3, S_v, S_v), equal sizes adjacent, global crops first.
        masks: (G * B, N) bool for the global crops, or None.
        """
        features, patch_logits = [], None
        start = 0
        while start < len(crops):
            end = start
            while end < len(crops) and crops[end].shape[-1] == crops[start].shape[-1]:
                end += 1
            with_masks = masks is not None and start == 0
            tokens = backbone_tokens(
                self.backbone,
                torch.cat(crops[start:end]),
                masks if with_masks and apply_masks else None,
                getattr(self, "mask_token", None),
            )
            features.append(tokens[:, 0])
            if with_masks:
                patches = tokens[:, self.backbone.num_prefix_tokens :]
                patch_head = self.head if self.shares_head else self.patch_head
                patch_logits = patch_head(patches[masks])
            start = end
        feats = torch.cat(features)
        return DINOOutput(self.head(feats), feats, patch_logits)


def make_teacher(student: nn.Module) -> nn.Module:
    """Teacher = frozen deep copy of the student (same initial weights, no gradients)."""
    teacher = copy.deepcopy(student)
    for param in teacher.parameters():
        param.requires_grad = False
    return teacher


@torch.no_grad()
def update_teacher(student: nn.Module, teacher: nn.Module, momentum: float) -> None:
    """θ_t ← m θ_t + (1 − m) θ_s over all parameters, in fused foreach kernels."""
    # Under FSDP both networks are sharded alike: each rank updates its own shards.
    student_params = [_local(p.detach()) for p in student.parameters()]
    teacher_params = [_local(p) for p in teacher.parameters()]
    torch._foreach_mul_(teacher_params, momentum)
    torch._foreach_add_(teacher_params, student_params, alpha=1.0 - momentum)


def _local(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.to_local() if isinstance(tensor, DTensor) else tensor
