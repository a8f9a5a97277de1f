"""Distillation (``pretrain.distill_from``): a trained network, frozen, is the teacher of a smaller
student trained with the DINO (and iBOT) losses, as DINOv2 distils its small models.

DINOv2 §5 changes the training loop in four ways, all kept here: the teacher is a frozen trained
network; the student keeps an EMA copy of itself that becomes the final model (this loop's EMA
"teacher", exported as usual); the student trains without masking and without stochastic depth;
and the iBOT loss is taken on every patch of the two global crops.

The teacher is the registered backbone *and its DINO / iBOT heads* (``teacher_head.safetensors``,
stored beside the backbone by every training run and registered version): its targets are its own
learnt prototypes, as in DINOv2. A head learnt jointly on a frozen backbone was the alternative;
it would be trained by the very loss it supplies targets for, which a frozen teacher is meant to
rule out (its targets could drift or collapse with the student's).

- [0]: Oquab et al., DINOv2, 2023, https://arxiv.org/abs/2304.07193 (§5, "Distillation of smaller models")
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from dinoflow.config import ConfigError, PretrainConfig
from dinoflow.models.teacher import DINOModel
from dinoflow.train.builders import build_heads, load_backbone
from dinoflow.train.checkpoint import HEAD_PREFIXES
from dinoflow.train.run_files import DISTILL_KEY as KEY
from dinoflow.train.run_files import HEAD_NAME, TEACHER_DIR, TEACHER_FILES
from dinoflow.train.warm_start import init_folder, state_digest

RECORD_NAME = "distill.json"  # the teacher's and student's sizes, and digests showing the teacher stayed frozen


def teacher_folder(cfg: PretrainConfig, output_dir: Path) -> Path | None:
    """Where the teacher's files are: staged by the pretrain pipeline in ``<output_dir>/teacher``,
    else ``distill_from`` itself (a folder); None when the run does not distil."""
    return init_folder(cfg.distill_from, output_dir, TEACHER_DIR, TEACHER_FILES, KEY)


def _check_fits(teacher_cfg: PretrainConfig, cfg: PretrainConfig, folder: Path) -> None:
    """The student must predict the teacher's prototypes on the teacher's crops (and patches, with iBOT)."""
    rules = [
        ("head.out_dim", teacher_cfg.head.out_dim, cfg.head.out_dim, "the student's head predicts the teacher's prototypes"),
        ("crops.global_size", teacher_cfg.crops.global_size, cfg.crops.global_size, "the teacher sees the student's global crops"),
    ]  # fmt: skip
    if cfg.loss.ibot_weight > 0:
        rules.append(("model.patch_size", teacher_cfg.model.patch_size, cfg.model.patch_size,
                      "the iBOT loss pairs the student's patches with the teacher's (set loss.ibot_weight: 0 otherwise)"))  # fmt: skip
    for key, theirs, ours, why in rules:
        if theirs != ours:
            raise ConfigError(
                f"{KEY}={cfg.distill_from!r}: pretrain.{key} is {ours!r} here and {theirs!r} in the teacher in {folder}; "
                f"it must be the same because {why}: set pretrain.{key}: {theirs!r}"
            )


def load_teacher(folder: Path, cfg: PretrainConfig) -> DINOModel:
    """The frozen teacher (eval mode, no gradients) from ``folder``'s config, backbone and heads.

    A teacher trained without iBOT has no patch head: its DINO head then scores the patch tokens
    too, as a shared head does (``head.ibot_separate: false``).

    Raises:
        ConfigError: the teacher does not fit the configured student (``_check_fits``).
    """
    backbone, teacher_cfg = load_backbone(folder)
    _check_fits(teacher_cfg, cfg, folder)
    head, patch_head = build_heads(teacher_cfg, backbone.num_features)
    teacher = DINOModel(backbone, head, patch_head if patch_head is not None else head)
    state = load_file(Path(folder) / HEAD_NAME)
    for prefix in HEAD_PREFIXES:
        module = getattr(teacher, prefix.rstrip("."))
        if module is not None:
            module.load_state_dict({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}, strict=True)
    for param in teacher.parameters():
        param.requires_grad_(False)
    return teacher.eval()


def prepare_student(student: nn.Module) -> None:
    """No masking in distillation: the mask token gets no gradient (DDP must not wait for one)."""
    if hasattr(student, "mask_token"):
        student.mask_token.requires_grad_(False)


def all_patches(global_crops: torch.Tensor, patch_size: int, views: int = 2) -> torch.Tensor:
    """(views * B, h * w) all-True masks: the iBOT loss on every patch of the global crops.

    Args:
        global_crops: (B, 3, G, G), one of the global views.
    """
    batch, side = global_crops.shape[0], global_crops.shape[-1] // patch_size
    return torch.ones(views * batch, side * side, dtype=torch.bool, device=global_crops.device)


def parameter_count(network: nn.Module) -> int:
    return sum(p.numel() for p in network.parameters())


def write_record(
    output_dir: Path,
    teacher: DINOModel,
    student: nn.Module | None = None,
    cfg: PretrainConfig | None = None,
    folder: Path | None = None,
) -> dict[str, object]:
    """Write ``distill.json``: at the start (with ``student``, ``cfg``, ``folder``) the source, the
    teacher's and student backbone's parameter counts and the teacher's digest; at the end (without
    them) the teacher's digest again, added, which equals the first as the teacher stayed frozen."""
    path = Path(output_dir) / RECORD_NAME
    if student is None:
        record = {**json.loads(path.read_text()), "teacher_sha256_end": state_digest(teacher.state_dict())}
    else:
        record = {
            "distill_from": str(cfg.distill_from),
            "folder": str(folder),
            "teacher_backbone_params": parameter_count(teacher.backbone),
            "student_backbone_params": parameter_count(student.backbone),
            "teacher_sha256_start": state_digest(teacher.state_dict()),
        }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    return record
