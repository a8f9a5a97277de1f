"""Collapse in miniature (DINO paper §5.3, Fig. 7): centering prevents one prototype from winning,
sharpening prevents uniform outputs; the health monitor flags whichever happens."""

from pathlib import Path

import pytest
import torch

from dinoflow.config import resolve_config
from dinoflow.train.distributed import DistEnv
from dinoflow.train.loop import train
from tests.train.test_loop import ListSink

TOY = {
    "model": {"arch": "vit_tiny_patch16_224", "patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2,
              "drop_path_rate": 0.0, "fused_attn": False},
    "head": {"out_dim": 64, "hidden_dim": 32, "bottleneck_dim": 16},
    "crops": {"global_size": 16, "local_size": 8, "local_number": 2},
    "optim": {"epochs": 10, "batch_size_per_rank": 8, "warmup_epochs": 0, "base_lr": 0.01,
              "freeze_last_layer_epochs": 0, "momentum_teacher": 0.9},
    "run": {"precision": "fp32", "log_every": 1, "checkpoint_every": 1000},
}  # fmt: skip


def toy_run(tiny_shards, tmp_path, loss: dict) -> list[dict]:
    sink = ListSink()
    cfg = resolve_config({**TOY, "loss": loss}, {})
    train(cfg, Path(tiny_shards["dir"]), tmp_path, sink, DistEnv(), torch.device("cpu"))
    return [metrics for _, metrics in sink.records]


def mean_last(records: list[dict], key: str, n: int = 5) -> float:
    return sum(r[key] for r in records[-n:]) / n


def test_centering_and_sharpening_together_avoid_both_collapses(tiny_shards, tmp_path):
    records = toy_run(tiny_shards, tmp_path, {})
    assert not any(r["collapse_uniform"] or r["collapse_one_prototype"] for r in records)
    assert 0.2 < mean_last(records, "teacher_batch_entropy") and mean_last(records, "teacher_entropy") < 0.95


def test_without_centering_one_prototype_wins_and_is_flagged(tiny_shards, tmp_path):
    records = toy_run(tiny_shards, tmp_path, {"centering": "none"})
    assert mean_last(records, "teacher_batch_entropy") < 0.05
    assert all(r["collapse_one_prototype"] for r in records[-5:])


def test_without_sharpening_outputs_go_uniform_and_are_flagged(tiny_shards, tmp_path):
    records = toy_run(tiny_shards, tmp_path, {"teacher_temp": 0.1, "warmup_teacher_temp": 0.1})
    assert mean_last(records, "teacher_entropy") > 0.98
    assert all(r["collapse_uniform"] for r in records[-5:])


@pytest.mark.parametrize("seed", [0, 5])
def test_same_seed_same_data_same_config_gives_bitwise_identical_weights(tiny_config, tiny_shards, tmp_path, seed):
    from dinoflow.train.checkpoint import load_checkpoint

    cfg = tiny_config.model_copy(update={"run": tiny_config.run.model_copy(update={"seed": seed})})
    for name in ("a", "b"):
        train(cfg, Path(tiny_shards["dir"]), tmp_path / name, ListSink(), DistEnv(), torch.device("cpu"))
    a, b = (load_checkpoint(tmp_path / n / "checkpoint.pt")["teacher"] for n in ("a", "b"))
    assert all(torch.equal(a[k], b[k]) for k in a)
