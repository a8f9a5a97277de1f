"""Where a run's state goes and comes back from: one class per way of holding the weights.

- ``FullCheckpointer``: one process or DDP (every rank holds every weight): rank 0 writes the
  whole state to ``checkpoint.pt``.
- ``ShardedCheckpointer``: FSDP (each rank holds a shard): every rank writes its shards (a
  collective), and the final export gathers them once.

Both record the run state beside the weights (the resolved config and, for a time-budgeted run,
its calibration), and both end a run with the same files: the teacher's backbone (what evaluation
scores and registration uploads) and its heads (what a distillation reads).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dinoflow.config import PretrainConfig
from dinoflow.train import sharding
from dinoflow.train.checkpoint import (
    export_weights,
    load_checkpoint,
    save_checkpoint,
    teacher_backbone_state,
    teacher_head_state,
)
from dinoflow.train.distributed import DistEnv
from dinoflow.train.run_files import BACKBONE_NAME, CHECKPOINT_NAME, HEAD_NAME
from dinoflow.train.step import TrainParts


class FullCheckpointer:
    """``checkpoint.pt`` holds everything a step changes; rank 0 writes it, every rank reads it."""

    file_name = CHECKPOINT_NAME
    collective = False  # one rank can save alone (e.g. on a preemption found by one rank)

    def __init__(self, parts: TrainParts, output_dir: Path, env: DistEnv, keep: int = 1):
        self.parts, self.output_dir, self.env, self.keep = parts, output_dir, env, keep
        self.run_state: dict[str, Any] = {}  # config (and calibration), saved with every checkpoint

    @property
    def path(self) -> Path:
        return self.output_dir / self.file_name

    def restore(self) -> dict[str, Any]:
        """Load the checkpoint into the parts; returns its iteration (and calibration, if any)."""
        state = load_checkpoint(self.path)
        self.parts.load_state(state)
        return {k: v for k, v in state.items() if k in ("iteration", "calibration")}

    def save(self, next_iter: int) -> None:
        if self.env.is_main:
            state = {**self.parts.state(), "iteration": next_iter, **self.run_state}
            save_checkpoint(state, self.output_dir, keep=self.keep)

    def export(self, total: int) -> None:
        """The teacher's backbone and heads as safetensors (the checkpoint was saved at ``total``)."""
        if self.env.is_main:
            teacher = self.parts.teacher
            export_weights(teacher.backbone.state_dict(), self.output_dir / BACKBONE_NAME)
            # The heads too, so that this run (or its registered version) can teach a distillation.
            export_weights(teacher_head_state(teacher.state_dict()), self.output_dir / HEAD_NAME)


class ShardedCheckpointer(FullCheckpointer):
    """FSDP: every rank writes and reads its shards (``torch.distributed.checkpoint``); the loss
    centres are replicated tensors saved beside them."""

    file_name = sharding.SHARDED_CHECKPOINT_NAME

    def __init__(self, parts: TrainParts, output_dir: Path, env: DistEnv, keep: int = 1):
        super().__init__(parts, output_dir, env, keep)
        self.collective = env.enabled  # saving is a collective: no rank may save alone
        self.networks = {"student": parts.student, "teacher": parts.teacher}
        self.loss_state = {f"dino_loss.{k}": v for k, v in parts.dino_loss.state_dict().items()}
        if parts.ibot_loss is not None:
            self.loss_state.update({f"ibot_loss.{k}": v for k, v in parts.ibot_loss.state_dict().items()})

    def restore(self) -> dict[str, Any]:
        meta = sharding.load_sharded(self.networks, self.parts.optimizer, self.loss_state, self.output_dir)
        return {"iteration": meta["iteration"]}

    def save(self, next_iter: int) -> None:
        meta = {"iteration": next_iter, **self.run_state}
        sharding.save_sharded(self.networks, self.parts.optimizer, self.loss_state, meta, self.output_dir)

    def export(self, total: int) -> None:
        """Gather the shards once (a collective), then write a full checkpoint and the exports."""
        full = {name: sharding.full_state(network) for name, network in self.networks.items()}
        if self.env.is_main:
            save_checkpoint({**full, "iteration": total, **self.run_state}, self.output_dir)
            export_weights(teacher_backbone_state(full), self.output_dir / BACKBONE_NAME)
            export_weights(teacher_head_state(full["teacher"]), self.output_dir / HEAD_NAME)


def _kind(cfg: PretrainConfig) -> type[FullCheckpointer]:
    return ShardedCheckpointer if cfg.run.parallelism == "fsdp" else FullCheckpointer


def has_checkpoint(cfg: PretrainConfig, output_dir: Path) -> bool:
    """Whether a run with this config would resume from ``output_dir`` (known before building it)."""
    return (output_dir / _kind(cfg).file_name).exists()


def make_checkpointer(parts: TrainParts, output_dir: Path, env: DistEnv) -> FullCheckpointer:
    """The checkpointer that matches ``run.parallelism``."""
    return _kind(parts.cfg)(parts, output_dir, env, keep=parts.cfg.run.keep_checkpoints)
