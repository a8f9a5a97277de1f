"""FSDP2 (``fully_shard``) for models too large to replicate, with sharded checkpoints.

``run.parallelism: fsdp`` shards the student and the teacher the same way (per transformer block,
then the rest), so the EMA update works shard by shard with no communication. Checkpoints are
written with ``torch.distributed.checkpoint`` (every rank writes its shards) and load on any
world size: DCP reshards on load. The final teacher backbone is gathered into one safetensors file.

- [0]: PyTorch FSDP2, https://pytorch.org/docs/stable/distributed.fsdp.fully_shard.html
- [1]: PyTorch DCP, https://pytorch.org/docs/stable/distributed.checkpoint.html
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor

SHARDED_CHECKPOINT_NAME = "checkpoint.dcp"
META_NAME = "meta.json"


def shard(model: nn.Module, forward_only: bool = False) -> nn.Module:
    """Shard each transformer block, then the remaining parameters (patch embed, heads).

    ``forward_only`` (the teacher): FSDP keeps the root's parameters gathered after forward,
    expecting a backward to come; the teacher has none, so its root is resharded at once and
    the EMA update sees shards on both sides.
    """
    for block in model.backbone.blocks:
        fully_shard(block)
    fully_shard(model, reshard_after_forward=True if forward_only else None)
    return model


def local(tensor: torch.Tensor) -> torch.Tensor:
    """This rank's shard of a DTensor (the tensor itself when not sharded)."""
    return tensor.to_local() if isinstance(tensor, DTensor) else tensor


def save_sharded(modules: dict[str, nn.Module], optimizer: torch.optim.Optimizer, extra: dict[str, torch.Tensor],
                 meta: dict[str, Any], directory: Path) -> Path:  # fmt: skip
    """Collective: all ranks write their shards to a temporary folder, then rank 0 swaps it in,
    so a crash mid-write leaves the previous checkpoint whole. ``meta`` (iteration, config) is
    plain JSON next to the shards; ``extra`` holds replicated tensors (e.g. the DINO center)."""
    final = Path(directory) / SHARDED_CHECKPOINT_NAME
    tmp = final.with_name(final.name + ".tmp")
    if dist.get_rank() == 0:
        shutil.rmtree(tmp, ignore_errors=True)
    dist.barrier()
    dcp.save(_state(modules, optimizer, extra), checkpoint_id=tmp)
    if dist.get_rank() == 0:
        (tmp / META_NAME).write_text(json.dumps(meta))
        old = final.with_name(final.name + ".old")
        if final.exists():
            final.replace(old)
        tmp.replace(final)
        shutil.rmtree(old, ignore_errors=True)
    dist.barrier()
    return final


def load_sharded(modules: dict[str, nn.Module], optimizer: torch.optim.Optimizer, extra: dict[str, torch.Tensor],
                 directory: Path) -> dict[str, Any]:  # fmt: skip
    """Collective: load into the (already sharded) modules, whatever world size wrote the files.
    ``extra`` tensors are filled in place. Returns the checkpoint's ``meta``."""
    path = Path(directory) / SHARDED_CHECKPOINT_NAME
    state = _state(modules, optimizer, extra)
    dcp.load(state, checkpoint_id=path)
    for name, module in modules.items():
        set_model_state_dict(module, state[name])
    set_optimizer_state_dict(modules["student"], optimizer, state["optimizer"])
    return json.loads((path / META_NAME).read_text())


def _state(modules: dict[str, nn.Module], optimizer: torch.optim.Optimizer, extra: dict[str, torch.Tensor]) -> dict:
    """What a sharded checkpoint holds; the optimizer state is keyed by the student's parameters."""
    state: dict[str, Any] = {name: get_model_state_dict(module) for name, module in modules.items()}
    state["optimizer"] = get_optimizer_state_dict(modules["student"], optimizer)
    state["extra"] = extra
    return state


def full_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """Collective: the whole module's weights as plain CPU tensors (complete on rank 0)."""
    return get_model_state_dict(module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
