"""FSDP2 on CPU (gloo): sharded training, sharded checkpoints that resume on another world size.

Two ranks train 6 of 12 iterations and stop (an injected NaN: the last checkpoint is kept). One
rank loads exactly what the two saved (weights, optimizer moments, DINO center), then resumes
with the same global batch and ends where an uninterrupted two-rank run ends.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file
from torch.distributed.checkpoint.format_utils import dcp_to_torch_save
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

from dinoflow.config import load_config_file, resolve_config, save_config, to_dict
from dinoflow.launch.local import training_command
from dinoflow.train import builders, sharding
from dinoflow.train.checkpoint import load_checkpoint
from dinoflow.train.distributed import ensure_process_group, shutdown_distributed
from dinoflow.train.optim import build_optimizer
from dinoflow.train.run_files import BACKBONE_NAME
from dinoflow.train.sharding import META_NAME, SHARDED_CHECKPOINT_NAME

pytestmark = [pytest.mark.slow]


def run(tiny_config, tiny_shards, tmp_path, name, nproc, batch, out, failpoints=""):
    section = to_dict(tiny_config)
    section["optim"].update(epochs=4, batch_size_per_rank=batch)  # 48 images / 16 a step: 12 iterations
    section["run"].update(parallelism="fsdp", checkpoint_every=2, loader_workers=0)
    config = save_config(resolve_config(section, {}), tmp_path / f"{name}.yaml")
    env = {**os.environ, "DINOFLOW_FAILPOINTS": failpoints}
    command = training_command(config, tiny_shards["dir"], out, nproc_per_node=nproc)
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)


def load_on_one_rank(config_path: Path, directory: Path) -> dict:
    """In this process, as a one-rank world: shard fresh networks and load the checkpoint that two
    ranks wrote; return the full weights, the full optimizer state and the DINO center."""
    cfg = load_config_file(config_path, [])
    student, teacher = builders.build_student_teacher(cfg)
    dino_loss, _ = builders.build_losses(cfg)
    ensure_process_group(torch.device("cpu"))
    try:
        sharding.shard(student), sharding.shard(teacher, forward_only=True)
        optimizer = build_optimizer(student, len(student.backbone.blocks), cfg.optim.layer_decay,
                                    cfg.optim.patch_embed_lr_mult)  # fmt: skip
        center = {f"dino_loss.{k}": v for k, v in dino_loss.state_dict().items()}
        meta = sharding.load_sharded({"student": student, "teacher": teacher}, optimizer, center, directory)
        full = StateDictOptions(full_state_dict=True)
        return {"meta": meta, "student": sharding.full_state(student), "teacher": sharding.full_state(teacher),
                "optimizer": get_optimizer_state_dict(student, optimizer, options=full), "extra": center}  # fmt: skip
    finally:
        shutdown_distributed()


def test_sharded_checkpoint_resumes_on_another_world_size(tiny_config, tiny_shards, tmp_path):
    whole = run(tiny_config, tiny_shards, tmp_path, "whole", 2, 8, tmp_path / "whole")
    assert whole.returncode == 0, whole.stdout[-3000:] + whole.stderr[-3000:]

    out = tmp_path / "resumed"
    stopped = run(tiny_config, tiny_shards, tmp_path, "first", 2, 8, out, failpoints="nan_loss@7")
    assert stopped.returncode != 0 and "loss is nan at iteration 7" in stopped.stdout + stopped.stderr
    assert json.loads((out / SHARDED_CHECKPOINT_NAME / META_NAME).read_text())["iteration"] == 6

    # What two ranks saved (converted offline by DCP itself) is exactly what one rank loads.
    dcp_to_torch_save(out / SHARDED_CHECKPOINT_NAME, tmp_path / "saved.pt")
    saved = torch.load(tmp_path / "saved.pt", weights_only=True)
    loaded = load_on_one_rank(tmp_path / "first.yaml", out)
    assert loaded["meta"]["iteration"] == 6
    for part in ("student", "teacher", "extra"):
        assert saved[part].keys() == loaded[part].keys()
        assert all(torch.equal(saved[part][k], loaded[part][k]) for k in saved[part]), part
    for name, moments in saved["optimizer"]["state"].items():
        assert all(torch.equal(v, loaded["optimizer"]["state"][name][k]) for k, v in moments.items()), name

    # One rank finishes the run from there, with the same global batch.
    resumed = run(tiny_config, tiny_shards, tmp_path, "second", 1, 16, out)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "checkpoint.dcp at iteration 6" in resumed.stdout + resumed.stderr
    final, reference = load_checkpoint(out / "checkpoint.pt"), load_checkpoint(tmp_path / "whole" / "checkpoint.pt")
    assert final["iteration"] == reference["iteration"] == 12
    # Summation order differs between one and two ranks; the EMA teacher averages that noise out
    # (measured: 1e-7), while Adam turns it into up to one step (lr ~3e-5) on near-zero gradients.
    for part, atol in (("teacher", 1e-5), ("student", 1e-4)):
        for key, value in reference[part].items():
            torch.testing.assert_close(final[part][key], value, rtol=1e-4, atol=atol, msg=f"{part}.{key}")

    backbone = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=16, patch_size=8,
                                 embed_dim=32, depth=2, num_heads=2)  # fmt: skip
    backbone.load_state_dict(load_file(out / BACKBONE_NAME), strict=True)  # gathered from the shards
