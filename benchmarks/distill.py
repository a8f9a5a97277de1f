"""Distillation (DINOv2 §5): how much of its teacher's k-NN a smaller student keeps, and how much
faster it embeds, next to the same student trained from scratch for the same time (the reference).

1. teacher: the ``demo`` preset trained for ``--minutes`` on the embedded synthetic data;
2. student: the demo preset halved in width and depth (embed 64, 2 blocks), distilled from that
   frozen teacher (``recipe: distill``) for ``--minutes``;
3. scratch: the same student architecture, self-distilled (``recipe: dino``) for ``--minutes``.

k-NN top-1 on the val split (the evaluate pipeline's protocol, k=20); inference images/s of each
backbone on the same batch (fp32 forward, best of ``--repeats``).

    python benchmarks/distill.py [--minutes 1 --per-class 60 --batch 256]

Writes benchmarks/results/distill.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

from dinoflow.config import resolve_config, save_config
from dinoflow.config.pipeline_params import EvaluateParams
from dinoflow.data.manifest import build_manifest
from dinoflow.data.shards import ImageRecord, build_dataset
from dinoflow.data.synthetic import SyntheticSpec, generate
from dinoflow.eval.protocol import eval_set, eval_settings
from dinoflow.eval.suite import score_backbone
from dinoflow.train.builders import load_backbone
from dinoflow.train.distill import parameter_count
from dinoflow.train.distributed import DistEnv
from dinoflow.train.loop import train

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from quality_common import machine  # noqa: E402

PRESETS = yaml.safe_load((ROOT / "conf" / "base" / "parameters_pretrain.yml").read_text())["pretrain_presets"]
STUDENT_MODEL = {"embed_dim": 64, "depth": 2, "num_heads": 2}
EVALUATE = EvaluateParams(knn_k=20, knn_ks=[20], knn_temperature=0.07, linear_epochs=1, segmentation_epochs=1,
                          segmentation_lr=0.01, batch_size=256, pictures=0)  # fmt: skip


class _NoSink:
    def log_metrics(self, metrics, step):
        pass

    def close(self):
        pass


def make_dataset(root: Path, per_class: int) -> dict:
    """The embedded data (as ``parameters_data_ingestion.yml`` draws it, fewer images) in shards."""
    spec = SyntheticSpec(num_classes=10, train_per_class=per_class, val_per_class=max(per_class // 3, 5),
                         texture_strength=0.1, min_contrast=0.3, light_objects=True, seed=0)  # fmt: skip
    generate(spec, root / "images")
    rows = build_manifest(root / "images", progress=False)
    classes = sorted({r["label"] for r in rows})
    records: dict[str, list] = {}
    for r in rows:
        records.setdefault(r["split"], []).append(ImageRecord(root / "images" / r["path"], classes.index(r["label"])))
    fingerprint = [(r["path"], r["sha256"], r["label"], r["split"]) for r in rows]
    return build_dataset(records, classes, root / "shards", fingerprint, max_side=64, workers=1)


def train_run(name: str, section: dict, dataset: dict, out: Path) -> tuple[Path, float]:
    """Train one config for its time budget; returns its run folder and training seconds."""
    cfg = resolve_config(section, PRESETS)
    save_config(cfg, out / name / "config.yaml")
    started = time.perf_counter()
    train(cfg, Path(dataset["dir"]), out / name, _NoSink(), DistEnv(), torch.device("cpu"))
    return out / name, time.perf_counter() - started


@torch.no_grad()
def images_per_s(backbone: torch.nn.Module, batch: torch.Tensor, repeats: int) -> float:
    """Best-of-``repeats`` fp32 forward throughput on ``batch`` (B, 3, S, S)."""
    backbone.eval()(batch[:8])  # warm-up
    best = float("inf")
    for _ in range(repeats):
        tick = time.perf_counter()
        backbone(batch)
        best = min(best, time.perf_counter() - tick)
    return batch.shape[0] / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=1.0, help="training budget of each of the 3 runs")
    parser.add_argument("--per-class", type=int, default=60, help="train images per class (10 classes)")
    parser.add_argument("--batch", type=int, default=256, help="inference batch")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", default=str(ROOT / "benchmarks/results/distill.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dinoflow-distill-") as tmp:
        out = Path(tmp)
        dataset = make_dataset(out / "data", args.per_class)
        budget = {"optim": {"time_budget_minutes": args.minutes}, "run": {"checkpoint_every": 10_000}}
        teacher, t_secs = train_run("teacher", {"preset": "demo", **budget}, dataset, out)
        student_section = {"preset": "demo", "model": STUDENT_MODEL, **budget}
        student, s_secs = train_run("student", {**student_section, "recipe": "distill", "distill_from": str(teacher)},
                                    dataset, out)  # fmt: skip
        scratch, r_secs = train_run("scratch", student_section, dataset, out)
        batch = torch.randn(args.batch, 3, 32, 32, generator=torch.Generator().manual_seed(0))
        results = {}
        for name, folder, secs in (("teacher", teacher, t_secs), ("student", student, s_secs),
                                   ("scratch", scratch, r_secs)):  # fmt: skip
            backbone, cfg = load_backbone(folder)
            settings = eval_settings(EVALUATE, cfg.crops.global_size)
            scores = score_backbone(backbone, eval_set(dataset, settings), settings, name, linear=False)
            results[name] = {"knn_top1": scores["knn"]["top1"], "backbone_params": parameter_count(backbone),
                             "train_seconds": round(secs, 1),
                             "images_per_s": round(images_per_s(backbone, batch, args.repeats), 1)}  # fmt: skip
    t, s, r = results["teacher"], results["student"], results["scratch"]
    summary = {
        "student_share_of_teacher_knn": round(s["knn_top1"] / t["knn_top1"], 4),
        "scratch_share_of_teacher_knn": round(r["knn_top1"] / t["knn_top1"], 4),
        "student_speedup_over_teacher": round(s["images_per_s"] / t["images_per_s"], 2),
        "student_params_share": round(s["backbone_params"] / t["backbone_params"], 4),
    }
    # The CPU kind and its bf16/fp32 GEMM peaks measured now: speed figures mean little without them.
    record = {"args": {k: v for k, v in vars(args).items() if k != "output"}, "machine": machine(), "runs": results,
              **summary}  # fmt: skip
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))  # noqa: T201


if __name__ == "__main__":
    main()
