"""Assemble what a training step needs (``TrainParts``) for a device and a way of parallelising:
networks (warm-started, compiled, sharded or DDP-wrapped), optimizer, losses, and when
distilling the frozen teacher.

- [1]: Oquab et al., DINOv2, 2023, https://arxiv.org/abs/2304.07193 (§5 distillation)
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from dinoflow.config import ConfigError, PretrainConfig
from dinoflow.models.backbone import use_fused_attention
from dinoflow.train import builders, distill, sharding
from dinoflow.train.checkpoint import export_weights
from dinoflow.train.distributed import DistEnv, ensure_process_group
from dinoflow.train.optim import build_optimizer
from dinoflow.train.step import TrainParts
from dinoflow.train.warm_start import warm_start


def _frozen_teacher(cfg: PretrainConfig, folder: Path | None, student: nn.Module) -> nn.Module | None:
    """The distillation teacher from ``folder`` (None: no distillation); refused under FSDP."""
    if folder is None:
        return None
    if cfg.run.parallelism == "fsdp":
        raise ConfigError(
            f"pretrain.distill_from={cfg.distill_from!r} with run.parallelism='fsdp': distillation runs under ddp "
            "only (the frozen teacher is not sharded yet); set pretrain.run.parallelism: ddp"
        )
    distill.prepare_student(student)
    return distill.load_teacher(folder, cfg)


def build_parts(
    cfg: PretrainConfig,
    env: DistEnv,
    device: torch.device,
    probe,
    init: Path | None,
    teacher_dir: Path | None = None,
    random_init_to: Path | None = None,
) -> tuple[TrainParts, dict[str, str] | None]:
    """The networks, optimizer and losses; with ``init``, warm-started (returns the warm-start record);
    with ``teacher_dir``, with the frozen distillation teacher read from there; with ``random_init_to``,
    the backbone as built, before any warm start, is saved there (evaluation's random-init baseline)."""
    student, teacher = builders.build_student_teacher(cfg)
    if random_init_to is not None:
        export_weights(student.backbone.state_dict(), random_init_to)
    # Before DDP broadcasts rank 0's weights and FSDP shards them; every rank reads the same files.
    record = warm_start(student, teacher, init, cfg) if init is not None else None
    frozen = _frozen_teacher(cfg, teacher_dir, student)
    student, teacher = student.to(device), teacher.to(device)
    frozen = frozen.to(device) if frozen is not None else None
    if cfg.model.fused_attn is None:
        for network in (student, teacher, *([frozen] if frozen is not None else [])):
            use_fused_attention(network, device.type == "cuda")
    dino_loss, ibot_loss = builders.build_losses(cfg)
    if cfg.run.compile:  # in place, per block: parameter names (and checkpoints) stay unchanged
        for block in [*student.backbone.blocks, *teacher.backbone.blocks]:
            block.compile()
    if cfg.run.parallelism == "fsdp":  # before the optimizer: sharding replaces the parameters by DTensors
        if probe is not None:
            raise ValueError("probes evaluate on rank 0 alone; use run.parallelism=ddp with them")
        if cfg.optim.time_budget_minutes is not None:
            raise ValueError(
                "optim.time_budget_minutes is not supported with run.parallelism=fsdp (calibration would have to"
                " undo sharded steps); set optim.epochs instead"
            )
        ensure_process_group(device)
        sharding.shard(student), sharding.shard(teacher, forward_only=True)
        model = student  # FSDP reduce-scatters the gradients itself
    else:
        model = DistributedDataParallel(student) if dist.is_initialized() else student
    m = cfg.optim
    optimizer = build_optimizer(student, len(student.backbone.blocks), m.layer_decay, m.patch_embed_lr_mult)
    return TrainParts(
        cfg, device, student, teacher, model, optimizer, dino_loss.to(device),
        ibot_loss.to(device) if ibot_loss is not None else None, frozen,
    ), record  # fmt: skip
