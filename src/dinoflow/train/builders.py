"""The only functions that read the config: they turn it into plain-argument objects."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from dinoflow.config import PretrainConfig, load_config_file
from dinoflow.data.masking import BlockMaskGenerator
from dinoflow.data.multicrop import MultiCropAugmentation
from dinoflow.losses.dino_loss import DINOLoss
from dinoflow.losses.ibot_loss import IBOTPatchLoss
from dinoflow.models.backbone import build_backbone
from dinoflow.models.heads import DINOHead
from dinoflow.models.teacher import DINOModel, make_teacher
from dinoflow.train.run_files import BACKBONE_FILES
from dinoflow.train.schedules import Schedules, build_schedules


def build_backbone_from_config(cfg: PretrainConfig, drop_path: bool = True) -> nn.Module:
    """The configured backbone, seeded by ``run.seed`` so random init is reproducible."""
    m = cfg.model
    torch.manual_seed(cfg.run.seed)
    backbone, _ = build_backbone(
        m.arch,
        img_size=cfg.crops.global_size,
        patch_size=m.patch_size,
        embed_dim=m.embed_dim,
        depth=m.depth,
        num_heads=m.num_heads,
        drop_path_rate=m.drop_path_rate if drop_path else 0.0,
        fused_attn=m.fused_attn is not False,  # the training loop decides None per device
        reg_tokens=m.reg_tokens,
        layer_scale_init=m.layer_scale_init,
        mlp=m.mlp,
        stem=m.stem,
    )
    return backbone


def load_backbone(folder: Path, which: str = "teacher") -> tuple[nn.Module, PretrainConfig]:
    """The backbone a run folder or a registered version's files describe (``config.yaml`` and
    safetensors weights), without drop-path. ``which``: ``"teacher"``, the trained teacher's weights
    (what is evaluated, registered and served); ``"random_init"``, the weights the run started from
    before any warm start, saved by the training process (the baseline evaluation compares with)."""
    if which not in BACKBONE_FILES:
        raise ValueError(f"which={which!r}: a run folder holds the backbones {sorted(BACKBONE_FILES)}")
    weights = Path(folder) / BACKBONE_FILES[which]
    if not weights.is_file():
        why = {
            "teacher": "a training run writes it when it finishes: is the run complete?",
            "random_init": "runs trained by an older dinoflow lack it: train the run again",
        }[which]
        raise FileNotFoundError(f"{folder} has no {weights.name} ({which.replace('_', ' ')} backbone weights); {why}")
    cfg = load_config_file(Path(folder) / "config.yaml")
    backbone = build_backbone_from_config(cfg, drop_path=False)
    backbone.load_state_dict(load_file(weights), strict=True)
    return backbone, cfg


def build_heads(cfg: PretrainConfig, num_features: int) -> tuple[DINOHead, DINOHead | None]:
    """The DINO head and the iBOT patch head: its own when ``head.ibot_separate``, else the same
    module; None without iBOT (``loss.ibot_weight`` 0)."""
    h = cfg.head

    def make_head() -> DINOHead:
        return DINOHead(num_features, h.out_dim, h.hidden_dim, h.bottleneck_dim, h.nlayers, h.norm_last_layer)

    head = make_head()
    patch_head = None
    if cfg.loss.ibot_weight > 0:
        patch_head = make_head() if h.ibot_separate else head
    return head, patch_head


def build_student_teacher(cfg: PretrainConfig) -> tuple[DINOModel, DINOModel]:
    """Student and EMA teacher; a distilling student (``distill_from``) has no drop path (DINOv2 §5)."""
    backbone = build_backbone_from_config(cfg, drop_path=cfg.distill_from is None)
    student = DINOModel(backbone, *build_heads(cfg, backbone.num_features))
    teacher = make_teacher(student)
    teacher.eval()  # no drop path in the teacher, as in DINO
    return student, teacher


def build_augmentation(cfg: PretrainConfig) -> MultiCropAugmentation:
    c = cfg.crops
    return MultiCropAugmentation(
        c.global_size,
        c.global_scale,
        c.local_size,
        c.local_scale,
        c.local_number,
        c.jitter_strength,
        c.hue_jitter,
        c.grayscale_prob,
        c.rotation_degrees,
    )


def build_losses(cfg: PretrainConfig) -> tuple[DINOLoss, IBOTPatchLoss | None]:
    """The DINO CLS loss and, when ``loss.ibot_weight > 0``, the iBOT patch loss."""
    loss = cfg.loss
    dino = DINOLoss(cfg.head.out_dim, loss.student_temp, loss.center_momentum, loss.centering)
    ibot = IBOTPatchLoss(cfg.head.out_dim, loss.student_temp, loss.center_momentum, loss.centering)
    return dino, ibot if loss.ibot_weight > 0 else None


def build_mask_generator(cfg: PretrainConfig, patch_size: int) -> BlockMaskGenerator:
    grid = cfg.crops.global_size // patch_size
    return BlockMaskGenerator((grid, grid), min_patches=min(4, grid * grid // 4 or 1))


def build_run_schedules(
    cfg: PretrainConfig, iters_per_epoch: int, peak_lr: float, total_iters: int | None = None
) -> Schedules:
    """The configured schedules; ``total_iters`` (fixed by a time budget) stretches them to that count."""
    o, loss = cfg.optim, cfg.loss
    return build_schedules(
        peak_lr=peak_lr,
        min_lr=o.min_lr,
        weight_decay=o.weight_decay,
        weight_decay_end=o.weight_decay_end,
        momentum_teacher=o.momentum_teacher,
        momentum_teacher_end=o.momentum_teacher_end,
        warmup_teacher_temp=loss.warmup_teacher_temp,
        teacher_temp=loss.teacher_temp,
        epochs=o.epochs,
        iters_per_epoch=iters_per_epoch,
        warmup_epochs=o.warmup_epochs,
        warmup_teacher_temp_epochs=loss.warmup_teacher_temp_epochs,
        freeze_last_layer_epochs=o.freeze_last_layer_epochs,
        total_iters=total_iters,
    )
