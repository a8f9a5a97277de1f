"""End to end: `kedro run` (what `make demo` runs) in a fresh clone of the project, its wall time
split by node, and the share that is neither training nor evaluation compute (process start-up,
ingestion, validation, dataset building, registration, promotion, Kedro and MLflow bookkeeping).

Training compute is the training loop's own time (``loop_seconds`` in the run summary: the
iterations, data and augmentation included; its process start-up and model building are not).
Evaluation compute is the evaluate node. Writes benchmarks/results/e2e.json.

    python benchmarks/e2e.py
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def fresh_clone(target: Path) -> Path:
    """A clean clone of the committed project (git and DVC metadata, no data, no MLflow store)."""
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(target)], check=True)
    return target


def main() -> None:
    kedro = str(Path(sys.executable).with_name("kedro"))
    env = {**os.environ, "DO_NOT_TRACK": "true", "KEDRO_DISABLE_TELEMETRY": "1", "DVC_NO_ANALYTICS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    with tempfile.TemporaryDirectory() as tmp:
        project = fresh_clone(Path(tmp) / "project")
        start = time.perf_counter()
        run = subprocess.run([kedro, "run"], cwd=project, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if run.returncode:
            sys.exit(f"kedro run failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}")
        stages = json.loads((project / "data" / "08_reporting" / "stage_times.json").read_text())
        summary = json.loads((project / "data" / "06_models" / "pretrain_result.json").read_text())["summary"]
        metrics = json.loads((project / "data" / "08_reporting" / "metrics.json").read_text())
    training, evaluation = summary["loop_seconds"], stages["nodes"]["evaluate_node"]
    overhead = wall - training - evaluation
    from quality_common import machine  # torch's import and the GEMM peak, after the timed run

    report = {
        "benchmark": "e2e",
        "machine": {**machine(), "platform": platform.platform(), "cpus": os.cpu_count()},
        "wall_seconds": wall,
        "startup_seconds": wall - stages["pipeline_seconds"],  # interpreter, imports, Kedro session
        "node_seconds": stages["nodes"],
        "training_compute_seconds": training,
        # the training process's start (imports, model, shards, loader workers) and end (last
        # checkpoint, exported backbone, exit), and the pretrain node's own bookkeeping
        "training_process_start_end_seconds": stages["nodes"]["pretrain_node"] - training,
        "evaluation_compute_seconds": evaluation,
        "overhead_seconds": overhead,
        "overhead_share": overhead / wall,
        "knn_top1": metrics["knn_top1"],
        "knn_top1_random_init": metrics["knn_top1_random_init"],
    }
    print(f"wall {wall:.0f} s: training {training:.0f} s, evaluation {evaluation:.0f} s, "
          f"everything else {overhead:.0f} s ({overhead / wall:.0%})")  # fmt: skip
    print(f"  {'start-up before the pipeline':32s} {report['startup_seconds']:7.1f} s")
    print(f"  {'training process start and end':32s} {report['training_process_start_end_seconds']:7.1f} s")
    for name, seconds in sorted(stages["nodes"].items(), key=lambda item: -item[1]):
        print(f"  {name:32s} {seconds:7.1f} s")
    m = report["machine"]
    print(f"demo teacher k-NN {report['knn_top1']:.3f} (random init {report['knn_top1_random_init']:.3f}); "
          f"{m['cpu']} ({m['kind']}), GEMM peak {m['gemm_peak_tflops_bf16']} TFLOP/s bf16, "
          f"{m['gemm_peak_tflops_fp32']} fp32")  # fmt: skip
    out = ROOT / "benchmarks" / "results" / "e2e.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
