"""Quality on real data within a small CPU budget: Fashion-MNIST as an ordinary labelled folder
(``fashion_mnist.py``), through the real pipeline (``kedro run --params data.source=...`` in a
fresh clone), with a fixed training-time budget; in the same run, lightly's DINO example with its
standard small-ViT recipe at the same budget on the same folder (``reference_dino.py``) and the
supervised ceiling (the same backbone with labels on the same global crops, same wall time).

Every backbone is scored with the evaluate node's protocol (weighted k-NN k=20 T=0.07 on the
final CLS token, DINOv2's linear-probe grid) on the same 60,000 / 10,000 split. Writes
benchmarks/results/quality.json and prints a table; the figures come with the CPU kind and the
bf16/fp32 GEMM peaks measured in the same run.

    pip install -e '.[bench]'                      # the reference (lightly), benchmark-only
    python benchmarks/quality.py [--minutes 10] [--seeds 0 1] [--no-reference] [--no-ceiling]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from e2e import fresh_clone  # noqa: E402
from fashion_mnist import DatasetUnavailable, write_folder  # noqa: E402
from quality_common import RESULTS, machine, score_on, write_report  # noqa: E402


def kedro_run(project: Path, *args: str) -> None:
    """``kedro run *args`` in the clone, with its own store; exits with the log's end if it fails."""
    env = {**os.environ, "DO_NOT_TRACK": "true", "KEDRO_DISABLE_TELEMETRY": "1", "DVC_NO_ANALYTICS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    # The project's committed code, in kedro and in the training process it starts alike (the
    # installed package may be an editable checkout with changes in progress).
    env["PYTHONPATH"] = os.pathsep.join([str(project / "src"), *filter(None, [env.get("PYTHONPATH")])])
    run = subprocess.run([str(Path(sys.executable).with_name("kedro")), "run", *args], cwd=project, env=env,
                         text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    if run.returncode:
        sys.exit(f"kedro run {' '.join(args)} failed:\n{run.stdout[-4000:]}")


def run_pipeline(project: Path, folder: Path, minutes: float, seed: int, params: list[str]) -> dict:
    """``kedro run`` on the folder with the training budget; the run's metrics and summary."""
    preset = [] if any(p.startswith("pretrain.preset=") for p in params) else ["pretrain.preset=small"]
    # The folder is benchmark data, not a dataset of this repository: DVC does not track it.
    overrides = [f"data.source={folder}", "data.dvc_track=false", *preset, f"pretrain.optim.time_budget_minutes={minutes}",
                 f"pretrain.run.seed={seed}", *params]  # fmt: skip
    started = time.perf_counter()
    kedro_run(project, "--params", ",".join(overrides))
    result = json.loads((project / "data" / "06_models" / "pretrain_result.json").read_text())
    metrics = json.loads((project / "data" / "08_reporting" / "metrics.json").read_text())
    promotion = json.loads((project / "data" / "08_reporting" / "promotion.json").read_text())
    config_path = project / result["config"]  # relative paths are the project's
    config = yaml.safe_load(config_path.read_text())
    summary = result["summary"]
    stages = json.loads((project / "data" / "08_reporting" / "stage_times.json").read_text())
    evaluate = stages["nodes"]["evaluate_node"]
    return {
        "seed": seed,
        "wall_seconds": time.perf_counter() - started,
        "train_seconds": summary["loop_seconds"],
        # What the budget paid for: the calibration (model build and timed steps) and the loop, and
        # the step time the count was fixed with against the one the run then had.
        "budget_used_seconds": summary["budget_calibration_seconds"] + summary["loop_seconds"],
        "calibrated_seconds_per_iteration": summary["budget_seconds_per_iteration"],
        "seconds_per_iteration": summary["loop_seconds"] / summary["iterations"],
        "evaluate_seconds": evaluate,  # the evaluate node: both backbones, raw pixels, pictures, logging
        "evaluate_share_of_training": evaluate / summary["loop_seconds"],
        "iterations": summary["iterations"],
        "images_seen": summary["iterations"] * config["optim"]["batch_size_per_rank"],
        "knn_top1": metrics["knn_top1"],
        "knn_top1_random_init": metrics["knn_top1_random_init"],
        "knn_top1_raw_pixels": metrics["knn_top1_raw_pixels"],
        "linear_top1": metrics["linear_top1"],
        "linear_top1_random_init": metrics["linear_top1_random_init"],
        "promotion": {k: promotion[k] for k in ("decision", "reasons")},  # what the registry's gates made of it
        "config": str(config_path),
    }


def reference(folder: Path, dataset: Path, seconds: float) -> dict:
    from dinoflow.config import resolve_config
    from dinoflow.eval.suite import EvalSettings
    from reference_dino import STANDARD_SMALL, train_reference

    cfg = resolve_config(STANDARD_SMALL, {})
    backbone, seen = train_reference(cfg, folder / "train", seconds)
    return {**seen, **score_on(backbone, dataset, EvalSettings(image_size=cfg.crops.global_size), linear=True)}


def ceiling(config: Path, dataset: Path, seconds: float) -> dict:
    from dinoflow.config import load_config_file
    from dinoflow.eval.suite import EvalSettings
    from supervised_ceiling import train_supervised

    cfg = load_config_file(config)
    backbone, seen = train_supervised(cfg, dataset, seconds)
    return {**seen, **score_on(backbone, dataset, EvalSettings(image_size=cfg.crops.global_size), linear=True)}


def table(report: dict) -> str:
    rows = ["| backbone | k-NN top-1 | linear top-1 | images seen |", "|---|---|---|---|"]
    for run in report["dinoflow"]:
        rows.append(f"| dinoflow (seed {run['seed']}) | {run['knn_top1']:.3f} | {run['linear_top1']:.3f} "
                    f"| {run['images_seen']:,} |")  # fmt: skip
    first = report["dinoflow"][0]
    rows.append(
        f"| same net, random init | {first['knn_top1_random_init']:.3f} | {first['linear_top1_random_init']:.3f} | 0 |"
    )
    rows.append(f"| raw pixels (standardised) | {first['knn_top1_raw_pixels']:.3f} | – | – |")
    for name in ("reference", "supervised_ceiling"):
        if name in report:
            r = report[name]
            rows.append(
                f"| {name.replace('_', ' ')} | {r['knn_top1']:.3f} | {r['linear_top1']:.3f} | {r['images_seen']:,} |"
            )
    rows.append("\n" + "; ".join(f"seed {r['seed']}: training {r['train_seconds']:.0f} s, evaluate node "
                                 f"{r['evaluate_seconds']:.0f} s ({r['evaluate_share_of_training']:.0%})"
                                 for r in report["dinoflow"]))  # fmt: skip
    budget = report["minutes"] * 60
    rows.append("; ".join(f"seed {r['seed']}: {r['iterations']:,} steps used {r['budget_used_seconds']:.0f} s of the "
                          f"{budget:.0f}-s budget ({r['calibrated_seconds_per_iteration']:.3f} s per step calibrated, "
                          f"{r['seconds_per_iteration']:.3f} run)" for r in report["dinoflow"]))  # fmt: skip
    rows.append("; ".join(f"seed {r['seed']}: {r['promotion']['decision']} ({'; '.join(r['promotion']['reasons'])})"
                          for r in report["dinoflow"]))  # fmt: skip
    m = report["machine"]
    rows.append(f"\n{m['cpu']} ({m['kind']}), {m['threads']} threads; GEMM peak {m['gemm_peak_tflops_bf16']} TFLOP/s "
                f"bf16, {m['gemm_peak_tflops_fp32']} fp32; training budget {report['minutes']} min")  # fmt: skip
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="training budget of every backbone")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--train", type=int, default=60000)
    parser.add_argument("--val", type=int, default=10000)
    parser.add_argument("--data", type=Path, default=RESULTS / "fashion-mnist", help="where the folder is written")
    parser.add_argument("--no-reference", action="store_true")
    parser.add_argument("--no-ceiling", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS / "quality.json")
    parser.add_argument("params", nargs="*", help="extra kedro --params, e.g. pretrain.preset=small")
    args = parser.parse_args()
    try:
        folder = write_folder(args.data, {"train": args.train, "val": args.val})
    except DatasetUnavailable as error:
        sys.exit(f"error: {error}")
    report = {"benchmark": "quality", "dataset": "fashion-mnist", "minutes": args.minutes, "machine": machine(),
              "params": args.params, "dinoflow": []}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        project = fresh_clone(Path(tmp) / "project")
        for seed in args.seeds:
            report["dinoflow"].append(run_pipeline(project, folder, args.minutes, seed, args.params))
            print(json.dumps(report["dinoflow"][-1]), flush=True)  # noqa: T201
        dataset = project / "data" / "05_model_input" / "dataset"
        if not args.no_reference:
            report["reference"] = reference(folder, dataset, args.minutes * 60)
            report["ratio_knn_to_reference"] = report["dinoflow"][0]["knn_top1"] / report["reference"]["knn_top1"]
        if not args.no_ceiling:
            report["supervised_ceiling"] = ceiling(Path(report["dinoflow"][0]["config"]), dataset, args.minutes * 60)
    write_report(args.out, report, table(report))


if __name__ == "__main__":
    main()
