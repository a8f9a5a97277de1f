"""Preemption: SIGTERM (a Kubernetes eviction, a spot reclaim, a launcher's cancel) stops training
at the next step boundary, after a checkpoint, instead of losing the work since the last one.

The signal handler only sets a flag; the loop checks it once per iteration, and under
``torchrun`` the ranks agree through an all-reduce, so every rank stops at the same iteration.
"""

from __future__ import annotations

import signal

import torch
import torch.distributed as dist

EXIT_CODE = 128 + signal.SIGTERM  # what a shell reports for a process ended by SIGTERM: 143


class Preempted(Exception):
    """Training stopped on SIGTERM after writing the checkpoint of ``iteration``."""

    def __init__(self, iteration: int) -> None:
        super().__init__(f"preempted: checkpoint written at iteration {iteration}; rerun the same command to resume")
        self.iteration = iteration


class PreemptionFlag:
    def __init__(self) -> None:
        self.requested = False

    def install(self) -> PreemptionFlag:
        """Handle SIGTERM in this (main) thread from now on."""
        signal.signal(signal.SIGTERM, self._on_signal)
        return self

    def _on_signal(self, signum, frame) -> None:
        self.requested = True

    def should_stop(self) -> bool:
        """True on every rank as soon as any rank was signalled."""
        if dist.is_available() and dist.is_initialized():
            # NCCL reduces only CUDA tensors; gloo CPU ones.
            device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
            flag = torch.tensor([float(self.requested)], device=device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            return bool(flag.item())
        return self.requested
