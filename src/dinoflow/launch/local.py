"""Local launcher: run the pure-core training entry point as a separate process.

One process: ``python -m dinoflow.train ...``; several: ``torchrun --standalone
--nproc-per-node N -m dinoflow.train ...`` (gloo on CPU, NCCL on GPU). The child's output is
streamed to our log as it arrives; Ctrl-C or a timeout stops the whole process group.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path

from dinoflow.parallel import die_with_parent

log = logging.getLogger(__name__)


class TrainingFailedError(RuntimeError):
    """The training process exited non-zero; its last output lines are in the message."""


def train_args(config: Path | str, dataset: Path | str, output: Path | str, sinks: Sequence[str] = ()) -> list[str]:
    """The arguments of ``python -m dinoflow.train`` (shared by the local and Kubernetes launchers)."""
    args = ["--config", str(config), "--dataset", str(dataset), "--output", str(output)]
    return args + [arg for sink in sinks for arg in ("--sink", sink)]


def training_command(
    config: Path, dataset: Path, output: Path, nproc_per_node: int, sinks: Sequence[str] = ()
) -> list[str]:
    args = train_args(config, dataset, output, sinks)
    if nproc_per_node > 1:
        launcher = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={nproc_per_node}",
        ]
        return [*launcher, "-m", "dinoflow.train", *args]
    return [sys.executable, "-m", "dinoflow.train", *args]


def run_process(command: Sequence[str], env: Mapping[str, str], timeout_s: float, cwd: Path | None = None) -> None:
    """Run ``command``, streaming its output; raise ``TrainingFailedError`` on failure."""
    log.info("launching: %s", " ".join(command))
    process = subprocess.Popen(
        list(command),
        env={**os.environ, "DINOFLOW_LOG_FORMAT": "%(levelname)s %(name)s: %(message)s", **env},
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        start_new_session=True,  # own process group: we can stop torchrun and its workers together
        # SIGTERM when this process dies, even by SIGKILL: the trainer checkpoints and exits instead
        # of running on orphaned, and the next run resumes from that checkpoint.
        preexec_fn=partial(die_with_parent, signal.SIGTERM, os.getpid()),
    )
    tail: list[str] = []
    timed_out = threading.Event()

    def on_timeout() -> None:
        timed_out.set()
        _stop(process)

    watchdog = threading.Timer(timeout_s, on_timeout)
    watchdog.start()
    try:
        for line in process.stdout:
            log.info("[train] %s", line.rstrip())
            tail = (tail + [line.rstrip()])[-30:]
        returncode = process.wait()
    except BaseException:
        _stop(process)
        raise
    finally:
        watchdog.cancel()
    if timed_out.is_set():
        raise TrainingFailedError(f"training exceeded its {timeout_s} s limit and was stopped")
    if returncode:
        raise TrainingFailedError(f"training exited with code {returncode}; last output:\n" + "\n".join(tail))


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
