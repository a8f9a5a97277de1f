"""The one place that reads torchrun's environment (RANK, LOCAL_RANK, WORLD_SIZE)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed() -> tuple[DistEnv, torch.device]:
    """Join the process group when launched by torchrun: NCCL on GPU, gloo on CPU."""
    env = DistEnv(
        rank=int(os.environ.get("RANK", 0)),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
        world_size=int(os.environ.get("WORLD_SIZE", 1)),
    )
    if torch.cuda.is_available():
        torch.cuda.set_device(env.local_rank)
        device = torch.device("cuda", env.local_rank)
    else:
        device = torch.device("cpu")
    # Under torchrun even one process joins a group (so `torchrun --nproc-per-node 1` is real DDP).
    if (env.enabled or "TORCHELASTIC_RUN_ID" in os.environ) and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=timedelta(minutes=10))
    return env, device


def ensure_process_group(device: torch.device) -> None:
    """FSDP needs a process group even in one process: make a one-member group when not
    launched by torchrun (an in-memory store, nothing listens on the network)."""
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)


def shutdown_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """Mean over ranks (identity in a single process)."""
    if dist.is_available() and dist.is_initialized():
        value = value.clone()
        dist.all_reduce(value)
        value /= dist.get_world_size()
    return value


def all_reduce_max(value: float) -> float:
    """Largest value over ranks (identity in a single process): ranks agree on the slowest."""
    if dist.is_available() and dist.is_initialized():
        tensor = torch.tensor([value], dtype=torch.float64)
        if dist.get_backend() == "nccl":  # NCCL reduces CUDA tensors only
            tensor = tensor.cuda()
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return float(tensor.item())
    return value
