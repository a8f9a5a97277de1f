"""Crashes and preemption of a real training process: kill -9 at random steps and SIGTERM.

Every restart resumes from the last checkpoint, and the final weights equal those of an
uninterrupted run (CPU, fp32, deterministic).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from dinoflow.config import resolve_config, save_config, to_dict
from dinoflow.launch.local import training_command
from dinoflow.train.checkpoint import load_checkpoint
from dinoflow.train.run_files import BACKBONE_NAME

pytestmark = [pytest.mark.slow, pytest.mark.faults]
TOTAL = 48  # 8 epochs x 6 iterations (48 images, batch 8)


@pytest.fixture
def config_path(tiny_config, tmp_path) -> Path:
    section = to_dict(tiny_config)
    section["optim"]["epochs"] = 8
    section["run"].update(checkpoint_every=5, loader_workers=1)
    return save_config(resolve_config(section, {}), tmp_path / "config.yaml")


def start(config: Path, dataset: str, out: Path) -> subprocess.Popen:
    """The pretrain node's own command, in its own process group (as a launcher runs it)."""
    command = training_command(config, dataset, out, nproc_per_node=1)
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )


def logged_steps(out: Path) -> list[int]:
    path = out / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(line)["step"] for line in lines if line.endswith("}")]


def wait_for_new_step(process: subprocess.Popen, out: Path, seen: int, step: int, timeout: float = 120) -> None:
    """Until a record with ``step`` >= ``step`` appears after the first ``seen`` records."""
    deadline = time.monotonic() + timeout
    while not any(s >= step for s in logged_steps(out)[seen:]):
        assert process.poll() is None, process.stdout.read()[-3000:]
        assert time.monotonic() < deadline, f"no step {step} within {timeout} s"
        time.sleep(0.02)


def finish(config: Path, dataset: str, out: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(training_command(config, dataset, out, 1), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def assert_same_weights(a: Path, b: Path) -> None:
    left, right = load_file(a / BACKBONE_NAME), load_file(b / BACKBONE_NAME)
    assert left.keys() == right.keys() and all(torch.equal(left[k], right[k]) for k in left)


def test_kill_9_at_random_steps_then_resume_gives_the_uninterrupted_weights(config_path, tiny_shards, tmp_path):
    dataset = tiny_shards["dir"]
    finish(config_path, dataset, tmp_path / "reference")
    out = tmp_path / "killed"
    kills = sorted(np.random.default_rng(7).choice(np.arange(3, TOTAL - 2), size=4, replace=False).tolist())
    resumed_at, died_after = [], []
    for step in kills:
        seen = len(logged_steps(out))
        process = start(config_path, dataset, out)
        wait_for_new_step(process, out, seen, step)
        process.send_signal(signal.SIGKILL)  # no handler runs: whatever was not checkpointed is lost
        output = process.communicate()[0]
        died_after.append(logged_steps(out)[-1])
        resumes = [line for line in output.splitlines() if "resumed from" in line]
        resumed_at.append(int(resumes[0].rsplit(" ", 1)[1]) if resumes else 0)
    last = finish(config_path, dataset, out)
    resumes = [line for line in (last.stdout + last.stderr).splitlines() if "resumed from" in line]
    resumed_at.append(int(resumes[0].rsplit(" ", 1)[1]))
    assert resumed_at[0] == 0
    for died, resumed in zip(died_after, resumed_at[1:], strict=True):
        # Each restart began at the last checkpoint written before the kill: the one at or below the
        # last logged step, or the one before it when the kill fell between a step's log and its save.
        assert resumed == 5 * (died // 5) or (died % 5 == 0 and resumed == died - 5), (died_after, resumed_at)
    assert load_checkpoint(out / "checkpoint.pt")["iteration"] == TOTAL
    assert_same_weights(out, tmp_path / "reference")


def test_sigterm_checkpoints_at_the_step_boundary_and_exits_143_quickly(config_path, tiny_shards, tmp_path):
    dataset, out = tiny_shards["dir"], tmp_path / "preempted"
    finish(config_path, dataset, tmp_path / "reference")
    process = start(config_path, dataset, out)
    wait_for_new_step(process, out, 0, 12)
    sent = time.monotonic()
    os.killpg(process.pid, signal.SIGTERM)  # the whole group, as a launcher stopping its job does
    output = process.communicate(timeout=60)[0]
    elapsed = time.monotonic() - sent
    assert process.returncode == 143, output[-3000:]
    assert "preempted: checkpoint written at iteration" in output
    stopped_at = load_checkpoint(out / "checkpoint.pt")["iteration"]
    assert stopped_at == logged_steps(out)[-1] >= 12  # the step in flight finished and was saved
    assert elapsed < 10, f"SIGTERM took {elapsed:.1f} s to stop (one step + one checkpoint expected)"
    print(f"SIGTERM to exit: {elapsed:.2f} s, checkpoint at iteration {stopped_at}")  # noqa: T201 (for the record)
    finish(config_path, dataset, out)
    assert_same_weights(out, tmp_path / "reference")
