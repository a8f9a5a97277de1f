"""Checkpoints: atomic writes by rank 0, pickle-free loads (``weights_only=True``).

Contents: student, teacher (both with heads), optimizer, DINO loss (its center buffer), the next
iteration to run and the resolved config — everything needed to continue exactly on schedule.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from dinoflow.atomic import WriteFailedError, atomic_path
from dinoflow.train.run_files import CHECKPOINT_NAME


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (full disk, I/O error); the previous one is intact."""


HEAD_PREFIXES = ("head.", "patch_head.")


def save_checkpoint(state: dict[str, Any], directory: Path, keep: int = 1) -> Path:
    """Write ``state`` to ``directory/checkpoint.pt`` via a temp file + rename, so a crash
    mid-write leaves the previous checkpoint intact. With ``keep > 1`` the file is also
    hard-linked as ``checkpoint_<iteration>.pt`` and only the ``keep`` newest of those remain."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / CHECKPOINT_NAME
    try:
        with atomic_path(path, f"checkpoint of iteration {state.get('iteration')}") as tmp:
            torch.save(state, tmp)
    except WriteFailedError as error:
        raise CheckpointWriteError(f"{error}; the previous checkpoint is kept") from error
    if keep > 1:
        snapshot = directory / f"checkpoint_{state['iteration']:08d}.pt"
        snapshot.unlink(missing_ok=True)
        os.link(path, snapshot)
        for old in sorted(directory.glob("checkpoint_*.pt"))[:-keep]:
            old.unlink()
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load tensors and plain containers only; a pickled payload that would run code is refused."""
    return torch.load(Path(path), map_location="cpu", weights_only=True)


def teacher_backbone_state(checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The teacher's backbone weights (what downstream users evaluate and deploy)."""
    prefix = "backbone."
    return {k[len(prefix) :]: v for k, v in checkpoint["teacher"].items() if k.startswith(prefix)}


def teacher_head_state(teacher_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The teacher's head weights from its ``DINOModel`` state dict (``head.*``, ``patch_head.*``)."""
    return {k: v for k, v in teacher_state.items() if k.startswith(HEAD_PREFIXES)}


def export_weights(state_dict: dict[str, torch.Tensor], path: Path) -> Path:
    """Write a module's weights (a backbone's: with timm's own key names, so they load with
    ``timm.create_model(arch, ...).load_state_dict(load_file(path), strict=True)``) as safetensors."""
    state = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
    with atomic_path(path, f"weights ({Path(path).name})") as tmp:
        save_file(state, tmp)
    return Path(path)
