"""One DINO training step (DINO Alg. 1): teacher on the global crops, student on all crops,
DINO (+ KoLeo, + iBOT) loss, backward, per-parameter clipping, AdamW, teacher EMA.

- [0]: Caron et al., DINO, 2021, https://arxiv.org/abs/2104.14294 (Alg. 1, §3.1)
- [1]: Oquab et al., DINOv2, 2023, https://arxiv.org/abs/2304.07193 (KoLeo, iBOT patch loss;
  §5 distillation: a frozen teacher, no student masking, iBOT on every global-crop patch)
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
from torch import nn

from dinoflow.config import PretrainConfig
from dinoflow.losses.dino_loss import DINOLoss
from dinoflow.losses.ibot_loss import IBOTPatchLoss
from dinoflow.losses.koleo_loss import koleo_loss
from dinoflow.models.teacher import update_teacher
from dinoflow.train import failpoints
from dinoflow.train.distill import all_patches
from dinoflow.train.health import clip_gradients
from dinoflow.train.optim import apply_schedules
from dinoflow.train.schedules import Schedules


class NonFiniteLossError(RuntimeError):
    """The loss became NaN/inf; the last good checkpoint is kept."""


@dataclass
class TrainParts:
    """What a step needs: the networks (``model`` is the student, DDP-wrapped when distributed),
    the optimizer and the losses (their centres are state). ``distill_teacher``, when distilling,
    is the frozen teacher whose outputs are the targets; ``teacher`` stays the student's EMA."""

    cfg: PretrainConfig
    device: torch.device
    student: nn.Module
    teacher: nn.Module
    model: nn.Module
    optimizer: torch.optim.Optimizer
    dino_loss: DINOLoss
    ibot_loss: IBOTPatchLoss | None
    distill_teacher: nn.Module | None = None  # frozen: rebuilt from its files, never checkpointed

    def state(self) -> dict:
        """Everything a step changes, for checkpoints (and for undoing calibration steps)."""
        return {
            "student": self.student.state_dict(),
            "teacher": self.teacher.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "dino_loss": self.dino_loss.state_dict(),
            **({"ibot_loss": self.ibot_loss.state_dict()} if self.ibot_loss is not None else {}),
        }

    def load_state(self, state: dict) -> None:
        self.student.load_state_dict(state["student"])
        self.teacher.load_state_dict(state["teacher"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.dino_loss.load_state_dict(state["dino_loss"])
        if self.ibot_loss is not None:
            self.ibot_loss.load_state_dict(state["ibot_loss"])


@dataclass
class StepResult:
    loss: torch.Tensor
    losses: dict[str, torch.Tensor]
    teacher_out: object  # DINOModel output of the teacher (cls_logits, cls_features, ...)
    grad_norm: float
    teacher_temp: float
    momentum: float


def _autocast(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_step(
    parts: TrainParts, it: int, crops: list[torch.Tensor], masks: torch.Tensor | None, schedules: Schedules
) -> StepResult:
    """Run iteration ``it`` on one batch.

    Args:
        crops: [2 global (B, 3, G, G), then local (B, 3, L, L)...] normalised views.
        masks: (2B, h*w) bool iBOT masks of the global crops, or None. When distilling they are
            replaced by all-True masks and the student sees every patch (DINOv2 §5).
    """
    cfg, batch = parts.cfg, crops[0].shape[0]
    distilling = parts.distill_teacher is not None
    if distilling and parts.ibot_loss is not None:
        masks = all_patches(crops[0], parts.student.backbone.patch_embed.patch_size[0])
    apply_schedules(parts.optimizer, schedules.lr[it], schedules.weight_decay[it], schedules.last_layer_lr_scale[it])
    teacher_temp = float(schedules.teacher_temp[it])
    with _autocast(parts.device, cfg.run.precision):
        with torch.no_grad():
            teacher_out = (parts.distill_teacher if distilling else parts.teacher)(crops[:2], masks, apply_masks=False)
        student_out = parts.model(crops, masks, apply_masks=not distilling)
        losses = {
            "loss_dino": parts.dino_loss(student_out.cls_logits, teacher_out.cls_logits, teacher_temp, len(crops))
        }
        if cfg.loss.koleo_weight > 0:  # per global crop, on the student backbone CLS (DINOv2)
            losses["loss_koleo"] = cfg.loss.koleo_weight * sum(
                koleo_loss(f) for f in student_out.cls_features[: 2 * batch].chunk(2)
            )
        if parts.ibot_loss is not None:
            losses["loss_ibot"] = cfg.loss.ibot_weight * parts.ibot_loss(
                student_out.patch_logits, teacher_out.patch_logits, masks, teacher_temp
            )
        loss = sum(losses.values())
        if failpoints.armed("nan_loss", it):
            loss = loss * float("nan")
    if not math.isfinite(loss.item()):
        raise NonFiniteLossError(f"loss is {loss.item()} at iteration {it}; last checkpoint kept")
    parts.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = clip_gradients(parts.student.parameters(), cfg.optim.clip_grad)
    parts.optimizer.step()
    momentum = float(schedules.momentum[it])
    update_teacher(parts.student, parts.teacher, momentum)
    return StepResult(loss, losses, teacher_out, grad_norm, teacher_temp, momentum)
