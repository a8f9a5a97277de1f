"""CUDA paths, run where a GPU exists (skipped elsewhere; `benchmarks/gpu_check.sh` runs them):
bf16 autocast with fused SDPA attention, torch.compile, DDP over NCCL, FSDP2 over NCCL."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch

from dinoflow.config import resolve_config, save_config, to_dict
from dinoflow.launch.local import train_args
from dinoflow.models.backbone import build_backbone
from dinoflow.train.distributed import DistEnv
from dinoflow.train.loop import train
from dinoflow.train.sinks import JsonlSink

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def gpu_config(tiny_config, **run):
    section = to_dict(tiny_config)
    section["model"]["fused_attn"] = True
    section["run"].update(precision="bf16", **run)
    return resolve_config(section, {})


@pytest.mark.parametrize("compile", [False, True])
def test_bf16_training_on_the_gpu(tiny_config, tiny_shards, tmp_path, compile):
    cfg = gpu_config(tiny_config, compile=compile)
    summary = train(cfg, tiny_shards["dir"], tmp_path, JsonlSink(tmp_path / "m.jsonl"), DistEnv(), torch.device("cuda"))
    assert summary["iterations"] == 12 and math.isfinite(summary["loss"])


def test_fused_attention_matches_the_reference_path():
    shape = {"patch_size": 8, "embed_dim": 64, "depth": 2, "num_heads": 2}
    fused = build_backbone("vit_tiny_patch16_224", 16, fused_attn=True, **shape)[0].cuda().eval()
    plain = build_backbone("vit_tiny_patch16_224", 16, fused_attn=False, **shape)[0].cuda().eval()
    plain.load_state_dict(fused.state_dict())
    images = torch.randn(4, 3, 16, 16, device="cuda")
    with torch.no_grad():
        torch.testing.assert_close(fused(images), plain(images), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("parallelism", ["ddp", "fsdp"])
def test_one_process_group_over_nccl(tiny_config, tiny_shards, tmp_path, parallelism):
    config = save_config(gpu_config(tiny_config, parallelism=parallelism), tmp_path / "config.yaml")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=1",
               "-m", "dinoflow.train", *train_args(config, tiny_shards["dir"], tmp_path / "out")]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["iterations"] == 12
