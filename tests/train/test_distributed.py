"""Real multi-process training: torchrun with 2 gloo ranks on the CPU."""

import json
import subprocess
import sys

import pytest
import torch

from dinoflow.config import save_config
from dinoflow.launch.local import training_command
from dinoflow.train.checkpoint import load_checkpoint

pytestmark = [pytest.mark.slow, pytest.mark.distributed]


def test_two_ranks_train_to_completion_with_a_shared_schedule(tiny_config, tiny_shards, tmp_path):
    config = save_config(tiny_config, tmp_path / "config.yaml")
    command = training_command(
        config, tiny_shards["shards"]["train"], tmp_path / "out", nproc_per_node=2
    )
    assert command[:3] == [sys.executable, "-m", "torch.distributed.run"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    # 48 images, 8 per rank x 2 ranks → 3 iterations per epoch, 2 epochs.
    assert summary["iterations"] == 6 and summary["iters_per_epoch"] == 3
    state = load_checkpoint(tmp_path / "out" / "checkpoint.pt")
    assert state["iteration"] == 6
    assert all(torch.isfinite(v).all() for v in state["teacher"].values())
    lines = (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3, 4, 5, 6]  # rank 0 only
