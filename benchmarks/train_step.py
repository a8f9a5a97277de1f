"""Training-step throughput of dinoflow's full DINO step, through the real training loop.

Measures images/s (one image = all its crops) of `dinoflow.train.loop.train` on random uint8
images, after a warm-up window, for the `demo` preset and a ViT-S/16 with 2x96 + 6x48 px crops,
in bf16 autocast and fp32. Writes benchmarks/results/train_step.json.

    python benchmarks/train_step.py [--steps 8]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from dinoflow.config import resolve_config, to_dict
from dinoflow.config.loading import deep_merge, validate
from dinoflow.data.shards import pack_shard, save_shard
from dinoflow.train.distributed import DistEnv
from dinoflow.train.loop import train

PARAMS = Path(__file__).resolve().parents[1] / "conf" / "base" / "parameters_pretrain.yml"
VIT_S16_SMALL_CROPS = {
    "preset": "vit_s16",
    "crops": {"global_size": 96, "local_size": 48, "local_number": 6},
    "optim": {"batch_size_per_rank": 32, "warmup_epochs": 0},
}


class WindowSink:
    def __init__(self) -> None:
        self.windows: list[float] = []

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.windows.append(metrics["images_per_s"])

    def close(self) -> None:
        pass


def write_random_dataset(directory: Path, count: int, image_size: int) -> Path:
    """A one-shard train split of random square images, with its index."""
    images = np.random.default_rng(0).integers(0, 256, (count, 3, image_size, image_size), dtype=np.uint8)
    save_shard(pack_shard(list(images), [0] * count), directory / "train-00000.pt")
    split = {"count": count, "has_masks": False, "shards": [{"path": "train-00000.pt", "count": count}]}
    (directory / "index.json").write_text(json.dumps({"classes": [], "splits": {"train": split}}))
    return directory


def measure(section: dict, image_size: int, steps: int, device: torch.device) -> dict:
    """Run ``steps`` iterations; report the rate of the second half (the first half warms up)."""
    presets = yaml.safe_load(PARAMS.read_text())["pretrain_presets"]
    cfg = resolve_config(section, presets)
    batch = cfg.optim.batch_size_per_rank
    # One epoch of exactly `steps` iterations; log twice so the second window excludes warm-up.
    cfg = validate(deep_merge(to_dict(cfg), {"optim": {"epochs": 1, "warmup_epochs": 0},
                                             "run": {"log_every": steps // 2, "checkpoint_every": 10**9}}))  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        dataset = write_random_dataset(Path(tmp) / "dataset", batch * steps, image_size)
        sink = WindowSink()
        start = time.perf_counter()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        train(cfg, dataset, Path(tmp) / "out", sink, DistEnv(), device)
        wall = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return {"images_per_s": sink.windows[-1], "batch": batch, "steps": steps, "wall_s": wall, "peak_gib": peak,
            "crops": to_dict(cfg)["crops"], "model": to_dict(cfg)["model"]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "train_step.json")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda (adds the full ViT-S/16 224+96 px recipe)")
    args = parser.parse_args()
    device = torch.device(args.device)
    cases = {"demo": ({"preset": "demo"}, 64), "vit_s16_96_48": (VIT_S16_SMALL_CROPS, 128)}
    if device.type == "cuda":
        cases["vit_s16_224_96"] = ({"preset": "vit_s16", "optim": {"warmup_epochs": 0}}, 256)
    results = []
    for name, (section, image_size) in cases.items():
        for precision in ("bf16", "fp32"):
            figures = measure({**section, "run": {"precision": precision}}, image_size, args.steps, device)
            results.append({"case": name, "precision": precision, **figures})
            print(f"{name:16s} {precision}: {figures['images_per_s']:8.1f} images/s (batch {figures['batch']})")
    report = {
        "benchmark": "train_step",
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "threads": torch.get_num_threads(),
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        },
        "torch": torch.__version__,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
