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
    command = training_command(config, tiny_shards["dir"], tmp_path / "out", nproc_per_node=2)
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


def _config_with(tiny_config, batch_size_per_rank):
    from dinoflow.config import resolve_config, to_dict

    section = to_dict(tiny_config)
    section["optim"]["batch_size_per_rank"] = batch_size_per_rank
    # KoLeo is per-rank by design (DINOv2), so it is not invariant to the number of ranks.
    section["loss"]["koleo_weight"] = 0.0
    return resolve_config(section, {})


def test_two_ranks_equal_one_rank_on_the_same_global_batch(tiny_config, tiny_shards, tmp_path):
    results = {}
    for nproc, batch in ((1, 8), (2, 4)):
        config = save_config(_config_with(tiny_config, batch), tmp_path / f"config{nproc}.yaml")
        out = tmp_path / f"out{nproc}"
        command = training_command(config, tiny_shards["dir"], out, nproc_per_node=nproc)
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        results[nproc] = load_checkpoint(out / "checkpoint.pt")
    assert results[1]["iteration"] == results[2]["iteration"] == 12
    for part in ("teacher", "student", "dino_loss"):
        for key, value in results[1][part].items():
            torch.testing.assert_close(results[2][part][key], value, rtol=1e-4, atol=1e-5, msg=f"{part}.{key}")
