"""Where a training step's time goes: the multi-crop augmentation of one batch timed alone, and the
real training loop under ``torch.profiler`` (the top operators by self time, CPU and device).

The step benchmark (``train_step.py``) says how fast; this says why. On a GPU the question is
whether the step is bound by the device's arithmetic or by the host (kernel launches, the per-image
crop loop, Python); on a CPU, which non-matmul operators take the cores.

    python benchmarks/profile_step.py [--device cuda] [--case demo|vit_s16_224_96] [--steps 12]
    # writes benchmarks/results/profile_<case>_<device>.json and .txt (the operator tables)
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
import yaml
from torch.profiler import ProfilerActivity, profile

from dinoflow.config import resolve_config, to_dict
from dinoflow.config.loading import deep_merge, validate
from dinoflow.train import builders
from dinoflow.train.distributed import DistEnv
from dinoflow.train.loop import train
from train_step import PARAMS, VIT_S16_SMALL_CROPS, WindowSink, write_random_dataset

CASES = {
    "demo": ({"preset": "demo"}, 64),
    "vit_s16_96_48": (VIT_S16_SMALL_CROPS, 128),
    "vit_s16_224_96": ({"preset": "vit_s16", "optim": {"warmup_epochs": 0}}, 256),
}
RESULTS = Path(__file__).resolve().parent / "results"
# The operators that run the matrix products (oneDNN / BLAS underneath): their share of the
# profiled time is how close the step can get to the GEMM peak at best.
MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::_addmm_activation")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def augmentation_seconds(cfg, image_size: int, device: torch.device, repeats: int = 5) -> float:
    """Mean wall time of the multi-crop augmentation of one batch, on ``device`` (after a warm-up)."""
    augment = builders.build_augmentation(cfg)
    batch = cfg.optim.batch_size_per_rank
    images = torch.randint(0, 256, (batch, 3, image_size, image_size), dtype=torch.uint8, device=device)
    augment(images, list(range(batch)))
    _sync(device)
    start = time.perf_counter()
    for r in range(repeats):
        augment(images, [r * batch + i for i in range(batch)])
    _sync(device)
    return (time.perf_counter() - start) / repeats


def profiled_loop(cfg, image_size: int, steps: int, device: torch.device) -> tuple[float, profile]:
    """Train ``steps`` iterations under the profiler; returns (images/s of the second half, profiler)."""
    batch = cfg.optim.batch_size_per_rank
    cfg = validate(deep_merge(to_dict(cfg), {"optim": {"epochs": 1, "warmup_epochs": 0},
                                             "run": {"log_every": steps // 2, "checkpoint_every": 10**9}}))  # fmt: skip
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with tempfile.TemporaryDirectory() as tmp:
        dataset = write_random_dataset(Path(tmp) / "dataset", batch * steps, image_size)
        sink = WindowSink()
        # The whole run is profiled, start-up included: the tables are read as shares, not rates.
        with profile(activities=activities) as prof:
            train(cfg, dataset, Path(tmp) / "out", sink, DistEnv(), device)
    return sink.windows[-1], prof


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--case", default="demo", choices=sorted(CASES))
    parser.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--rows", type=int, default=25)
    args = parser.parse_args()
    device = torch.device(args.device)
    section, image_size = CASES[args.case]
    presets = yaml.safe_load(PARAMS.read_text())["pretrain_presets"]
    cfg = resolve_config({**section, "run": {"precision": args.precision}}, presets)
    augment_s = augmentation_seconds(cfg, image_size, device)
    images_per_s, prof = profiled_loop(cfg, image_size, args.steps, device)
    step_s = cfg.optim.batch_size_per_rank / images_per_s
    sort_keys = ["self_cpu_time_total"] + (["self_cuda_time_total"] if device.type == "cuda" else [])
    averages = prof.key_averages()
    tables = {key: averages.table(sort_by=key, row_limit=args.rows) for key in sort_keys}
    matmul_us = sum(e.self_cpu_time_total for e in averages if e.key in MATMUL_OPS)
    report = {
        "benchmark": "profile_step",
        "case": args.case,
        "precision": args.precision,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "batch": cfg.optim.batch_size_per_rank,
        "images_per_s": images_per_s,
        "step_s": step_s,
        "augmentation_s_per_batch": augment_s,
        "augmentation_share_of_step": augment_s / step_s,
        # Of the host's profiled operator time, start-up included (on a GPU: of the launching side).
        "matmul_share_of_cpu_time": matmul_us / sum(e.self_cpu_time_total for e in averages),
    }
    stem = RESULTS / f"profile_{args.case}_{device.type}"
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    stem.with_suffix(".txt").write_text("\n\n".join(f"sorted by {k}\n{t}" for k, t in tables.items()))
    print(json.dumps(report, indent=2))
    for key, table in tables.items():
        print(f"sorted by {key}\n{table}")


if __name__ == "__main__":
    main()
