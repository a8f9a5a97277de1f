"""Scaling curves: how the cost of each stage grows with its work, and where memory ends.

Each point runs in its own process (``quality_common.in_own_process``), so its peak memory is its
own: ``ru_maxrss`` of the process plus that of its largest finished worker process (ingest and
shard building use a pool of one worker per core; workers share pages, so this is an estimate).

1. ingest + shards vs number of images (default 1k, 10k, 100k): the embedded generator writes N
   64 px images with masks (``data.synthetic``, timed apart: not part of the cost), then
   ``build_manifest_node`` (hash, full decode, checks) and ``build_dataset_node`` (shards) run on
   it as the pipeline calls them (parameters from conf/base, no DVC, no MLflow run).
   Extrapolated to 1M images with the measured log-log slope.
2. training step vs model size: timm ViT tiny / small / base (``vit_*_patch16_224``) with the
   ``vit_s16`` recipe (head 65536 prototypes), 2 x 96 px + 6 x 48 px crops, bf16 autocast, a
   batch of TRAIN_BATCH, through ``dinoflow.train.loop.train`` on random images as
   ``train_step.py`` measures it: seconds per step, images/s, FLOPs per image counted by torch and
   MFU against the bf16 GEMM peak measured in this run.
3. k-NN vs bank size (default 10k, 100k, 1M random 384-dim features, 1,000 queries, 1,000
   classes, k in {10, 20, 100, 200}): ``eval.knn.knn_classify_multi_k``.
4. feature extraction vs N (default 1k, 10k, 100k): random 64 px images in shards, read back
   with ``evaluation_batches`` at 32 px through the demo preset's ViT (random init) by
   ``extract_features`` (bf16, the probe inputs and patch tokens kept in memory, as evaluation does).

Per curve: the log-log slope of seconds vs N (cost ∝ N^slope; "linear" when 0.9-1.1) and a
straight-line fit of peak memory (GB = base + per_item x N) giving the N at which a 24 GB machine
is full; both are extrapolations beyond the measured sizes. Writes JSON and a log-log PNG.

    python benchmarks/scaling.py [--quick] [--curves ingest train knn features] [--sizes N ...] [--out ...]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from itertools import islice
from pathlib import Path
from unittest import mock

import numpy as np
import torch
import yaml

from dinoflow.config import resolve_config
from dinoflow.config.pipeline_params import DataParams, DatasetParams
from dinoflow.data.shards import ShardReader, index_entry, pack_shard, save_shard
from dinoflow.data.synthetic import SyntheticSpec, generate
from dinoflow.eval.features import evaluation_batches, extract_features
from dinoflow.eval.knn import knn_classify_multi_k
from dinoflow.pipelines.data_ingestion.nodes import build_manifest_node
from dinoflow.pipelines.dataset.nodes import build_dataset_node
from dinoflow.train.builders import build_backbone_from_config

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality_common import PARAMS, RESULTS, ROOT, in_own_process, machine  # noqa: E402
from train_step import gemm_peak, measure, step_flops_per_image  # noqa: E402

MEMORY_GB = 24.0
SIZES = {
    "default": {"ingest": [1_000, 10_000, 100_000], "train": ["tiny", "small", "base"],
                "knn": [10_000, 100_000, 1_000_000], "features": [1_000, 10_000, 100_000]},
    "quick": {"ingest": [1_000, 3_000, 10_000], "train": ["tiny", "small"],
              "knn": [10_000, 30_000, 100_000], "features": [1_000, 3_000, 10_000]},
}  # fmt: skip
MODELS = {"tiny": 192, "small": 384, "base": 768}  # timm name part → width (the child process's argument)
TRAIN_BATCH, TRAIN_STEPS = 16, 4  # the rate is that of the last TRAIN_STEPS // 2 steps
KNN_DIM, KNN_QUERIES, KNN_CLASSES = 384, 1_000, 1_000
FEATURE_BATCH, SHARD_IMAGES = 256, 4096


def peak_memory_gb() -> float:
    """This process's peak RSS plus that of its largest finished child (a pool worker)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round((own + child) / 2**20, 3)


def _conf(name: str, section: str) -> dict:
    return yaml.safe_load((ROOT / "conf" / "base" / name).read_text())[section]


def ingest_point(n: int) -> dict:
    """Generate n images, then the manifest and dataset nodes on them."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "raw"
        data = DataParams.model_validate({**_conf("parameters_data_ingestion.yml", "data"), "source": str(root),
                                          "ingest_cache": f"{tmp}/cache.json", "dvc_track": False})  # fmt: skip
        spec = SyntheticSpec(**{**data.synthetic.model_dump(), "train_per_class": n * 8 // 100,
                                "val_per_class": n * 2 // 100})  # fmt: skip
        started = time.perf_counter()
        generate(spec, root)
        generate_s = time.perf_counter() - started
        source = {"kind": "folder", "root": str(root)}
        started = time.perf_counter()
        manifest = build_manifest_node(source, data)
        manifest_s = time.perf_counter() - started
        clean = manifest[manifest["status"] == "ok"].reset_index(drop=True)
        dataset = DatasetParams.model_validate(
            {**_conf("parameters_dataset.yml", "dataset"), "output_dir": f"{tmp}/ds"}
        )
        started = time.perf_counter()
        with mock.patch("dinoflow.pipelines.dataset.nodes.mlflow_run.set_tags"):  # no MLflow run here
            build_dataset_node(clean, source, dataset, data)
        shards_s = time.perf_counter() - started
        shard_bytes = sum(p.stat().st_size for p in Path(tmp, "ds").glob("*.pt"))
    return {"n": len(manifest), "seconds": round(manifest_s + shards_s, 2), "manifest_s": round(manifest_s, 2),
            "shards_s": round(shards_s, 2), "generate_s": round(generate_s, 2),
            "images_per_s": round(len(manifest) / (manifest_s + shards_s), 1), "shard_gb": round(shard_bytes / 2**30, 4),
            "peak_memory_gb": peak_memory_gb()}  # fmt: skip


def train_section(width: int) -> dict:
    name = {w: k for k, w in MODELS.items()}[width]
    return {"preset": "vit_s16", "model": {"arch": f"vit_{name}_patch16_224"},
            "crops": {"global_size": 96, "local_size": 48, "local_number": 6},
            "optim": {"batch_size_per_rank": TRAIN_BATCH, "warmup_epochs": 0}}  # fmt: skip


def train_point(width: int) -> dict:
    """Seconds per step of the real training loop for one ViT width (bf16, 96 + 48 px crops)."""
    section = train_section(width)
    cfg = resolve_config(section, yaml.safe_load(PARAMS.read_text())["pretrain_presets"])
    params = sum(p.numel() for p in build_backbone_from_config(cfg, drop_path=False).parameters())
    flops = step_flops_per_image(section)
    run = measure(section, 128, TRAIN_STEPS, torch.device("cpu"))
    rate = run["images_per_s"]
    return {"n": params, "model": section["model"]["arch"], "batch": TRAIN_BATCH, "seconds": round(TRAIN_BATCH / rate, 3),
            "images_per_s": round(rate, 2), "flops_per_image": flops, "achieved_gflops": round(flops * rate / 1e9, 2),
            "peak_memory_gb": peak_memory_gb()}  # fmt: skip


def knn_point(n: int) -> dict:
    """Weighted k-NN of KNN_QUERIES random queries against n random bank vectors."""
    generator = torch.Generator().manual_seed(0)
    bank = torch.randn(n, KNN_DIM, generator=generator)
    queries = torch.randn(KNN_QUERIES, KNN_DIM, generator=generator)
    labels = torch.randint(0, KNN_CLASSES, (n,), generator=generator)
    started = time.perf_counter()
    knn_classify_multi_k(bank, labels, queries, KNN_CLASSES, (10, 20, 100, 200), 0.07)
    seconds = time.perf_counter() - started
    return {"n": n, "seconds": round(seconds, 3), "queries_per_s": round(KNN_QUERIES / seconds, 1),
            "bank_gb": round(bank.nbytes / 2**30, 3), "peak_memory_gb": peak_memory_gb()}  # fmt: skip


def write_random_shards(directory: Path, n: int, side: int = 64) -> Path:
    """A train split of n random side x side images in shards of SHARD_IMAGES, with its index."""
    rng, entries = np.random.default_rng(0), []
    for k, start in enumerate(range(0, n, SHARD_IMAGES)):
        count = min(SHARD_IMAGES, n - start)
        images = rng.integers(0, 256, (count, 3, side, side), dtype=np.uint8)
        shard = save_shard(pack_shard(list(images), [0] * count), directory / f"train-{k:05d}.pt")
        entries.append(index_entry(shard, count))
    split = {"count": n, "has_masks": False, "shards": entries}
    (directory / "index.json").write_text(json.dumps({"classes": [], "splits": {"train": split}}))
    return directory


def features_point(n: int) -> dict:
    """``extract_features`` of the demo ViT over n shard images read by ``evaluation_batches``."""
    demo = resolve_config({"preset": "demo"}, yaml.safe_load(PARAMS.read_text())["pretrain_presets"])
    size = demo.crops.global_size
    backbone = build_backbone_from_config(demo, drop_path=False)
    with tempfile.TemporaryDirectory() as tmp:
        reader = ShardReader.from_index(write_random_shards(Path(tmp), n), "train")
        extract_features(backbone, islice(evaluation_batches(reader, size, FEATURE_BATCH), 1))  # warm-up
        started = time.perf_counter()
        features = extract_features(backbone, evaluation_batches(reader, size, FEATURE_BATCH))
        seconds = time.perf_counter() - started
    kept = features.probe_inputs.nbytes + features.patch_tokens.nbytes
    return {"n": n, "seconds": round(seconds, 2), "images_per_s": round(n / seconds, 1), "view_px": size,
            "features_gb": round(kept / 2**30, 4), "peak_memory_gb": peak_memory_gb()}  # fmt: skip


POINTS = {"ingest": ingest_point, "train": train_point, "knn": knn_point, "features": features_point}


def fit(points: list[dict]) -> dict:
    """Log-log slope of seconds vs n, and memory = base + per_item x n (least squares)."""
    good = [p for p in points if "failed" not in p]
    if len(good) < 2:
        return {"note": "fewer than two measured points: no fit"}
    n = np.array([p["n"] for p in good], dtype=float)
    seconds = np.array([p["seconds"] for p in good])
    memory = np.array([p["peak_memory_gb"] for p in good])
    slope, intercept = np.polyfit(np.log(n), np.log(seconds), 1)
    per_item, base = np.polyfit(n, memory, 1)
    full = (MEMORY_GB - base) / per_item if per_item > 0 else None
    return {"time_slope": round(float(slope), 3), "linear": bool(0.9 <= slope <= 1.1),
            "time_log_intercept": float(intercept), "memory_base_gb": round(float(base), 3),
            "memory_gb_per_item": float(per_item), "n_at_24gb_extrapolated": None if full is None else float(full)}  # fmt: skip


def predict_seconds(f: dict, n: float) -> float:
    return float(np.exp(f["time_log_intercept"]) * n ** f["time_slope"])


def run_curve(curve: str, sizes: list) -> dict:
    args = [MODELS[s] for s in sizes] if curve == "train" else sizes
    points = []
    for n in args:
        started = time.perf_counter()
        p = in_own_process(__file__, f"--{curve}-one", n)
        p["wall_s"] = round(time.perf_counter() - started, 1)
        points.append(p)
        if "failed" not in p:
            extra = ", ".join(f"{k} {v}" for k, v in p.items() if k not in ("n", "seconds", "peak_memory_gb"))
            print(f"{curve} n={p['n']:,}: {p['seconds']} s, peak {p['peak_memory_gb']} GB ({extra})")
    result = {"points": points, "fit": fit(points)}
    f = result["fit"]
    if "time_slope" in f:
        where = f["n_at_24gb_extrapolated"]
        print(f"{curve}: cost ∝ N^{f['time_slope']} ({'linear' if f['linear'] else 'not linear'}), "
              f"24 GB at N ≈ {f'{where:,.0f}' if where else 'never (memory flat)'} (extrapolated)")  # fmt: skip
    if curve == "ingest" and "time_slope" in f:
        result["extrapolated_1m"] = {"seconds": round(predict_seconds(f, 1e6), 1),
                                     "shard_gb": round(points[-1]["shard_gb"] * 1e6 / points[-1]["n"], 2)}  # fmt: skip
        print(f"ingest + shards at 1M images: ≈ {result['extrapolated_1m']['seconds']:,.0f} s (extrapolated)")
    if curve == "train":
        good = [p for p in points if "failed" not in p]
        for p in good:
            p["mfu_bf16"] = round(p["achieved_gflops"] / 1e3 / RUN_PEAK["bf16"], 4)
        if len(good) > 1:  # step time against FLOPs per image: 1 when the step is compute-bound throughout
            slope = np.polyfit(np.log([p["flops_per_image"] for p in good]), np.log([p["seconds"] for p in good]), 1)[0]
            f["time_slope_vs_flops"] = round(float(slope), 3)
            print(f"train: step seconds ∝ FLOPs^{f['time_slope_vs_flops']}, MFU " + ", ".join(
                f"{p['model']} {p['mfu_bf16']:.0%}" for p in good))  # fmt: skip
    return result


RUN_PEAK: dict[str, float] = {}
LABELS = {"ingest": "images (manifest + shards)", "train": "backbone parameters (one step)",
          "knn": "bank vectors (1,000 queries)", "features": "images (demo ViT, 32 px)"}  # fmt: skip


def plot(curves: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(4.2 * len(curves), 3.6), squeeze=False)
    for ax, (curve, result) in zip(axes[0], curves.items(), strict=True):
        good = [p for p in result["points"] if "failed" not in p]
        n = [p["n"] for p in good]
        ax.loglog(n, [p["seconds"] for p in good], "o-", label="seconds")
        ax.loglog(n, [p["peak_memory_gb"] for p in good], "s--", label="peak memory (GB)")
        slope = result["fit"].get("time_slope")
        ax.set_title(f"{curve}" + (f": N^{slope:.2f}" if slope is not None else ""))
        ax.set_xlabel(LABELS[curve])
        ax.legend(fontsize=8)
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes: a few minutes on 2 cores")
    parser.add_argument("--curves", nargs="+", choices=list(POINTS), default=list(POINTS))
    parser.add_argument(
        "--sizes", nargs="+", help="replace the sizes of every curve named in --curves (model names for train)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "scaling.json")
    for curve in POINTS:
        parser.add_argument(f"--{curve}-one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    for curve, point in POINTS.items():
        if getattr(args, f"{curve}_one"):
            print(json.dumps(point(getattr(args, f"{curve}_one"))))
            return
    sizes = SIZES["quick" if args.quick else "default"]
    if args.sizes:
        sizes = {c: args.sizes if c == "train" else [int(n) for n in args.sizes] for c in args.curves}
    report = {"machine": machine(), "sizes": "quick" if args.quick else "default", "memory_limit_gb": MEMORY_GB}
    # A second measurement: on a shared 2-core VM the first one can come out at half the real peak.
    report["gemm_peak_tflops_bf16_rechecked"] = round(gemm_peak(torch.bfloat16, torch.device("cpu")) / 1e12, 3)
    RUN_PEAK["bf16"] = max(report["machine"]["gemm_peak_tflops_bf16"], report["gemm_peak_tflops_bf16_rechecked"])
    print(f"machine: {report['machine']}")
    report["curves"] = {curve: run_curve(curve, sizes[curve]) for curve in args.curves}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    plot(report["curves"], args.out.with_suffix(".png"))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
