"""What MLflow's system-metrics sampling costs a training run, against the demo's training step
measured in the same run.

One sample is what the training process's monitor thread does every
``pretrain_launcher.system_metrics_interval_s`` seconds: read CPU, memory, disk and network (and GPU
when present), check that the run is still running, and log the values into a real sqlite store.
The cost per training step is ``sample time x step time / interval``, so its share of a step is
``sample time / interval``, whatever the step; the step time is reported beside it for scale.
Writes benchmarks/results/system_metrics.json.

    python benchmarks/system_metrics.py [--samples 40] [--interval 10]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import mlflow
import torch
from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor
from mlflow.tracking import MlflowClient

from quality_common import RESULTS, machine
from train_step import measure


def sample_cost(samples: int) -> dict:
    """Mean wall and CPU seconds of one collect + status check + log cycle into a sqlite store."""
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        client = MlflowClient(uri)
        run_id = client.create_run(client.create_experiment("cost", artifact_location=f"{tmp}/a")).info.run_id
        monitor = SystemMetricsMonitor(run_id, sampling_interval=0, tracking_uri=uri)
        monitor.collect_metrics()  # psutil's first CPU reading only primes its counters
        for part in monitor.monitors:
            part.clear_metrics()
        wall, cpu = time.perf_counter(), time.thread_time()
        for _ in range(samples):
            monitor.collect_metrics()
            MlflowClient(uri).get_run(run_id)  # the monitor's "still running?" check
            monitor.publish_metrics(monitor.aggregate_metrics())
            monitor.mlflow_logger.flush()  # worst case: every sample written at once
        wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
        logged = len(client.get_metric_history(run_id, "system/cpu_utilization_percentage"))
    if logged != samples:
        raise RuntimeError(f"expected {samples} logged samples, found {logged}")
    return {"samples": samples, "wall_ms_per_sample": 1e3 * wall / samples, "cpu_ms_per_sample": 1e3 * cpu / samples}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between samples (the default)")
    parser.add_argument("--steps", type=int, default=16, help="demo training steps timed for scale")
    args = parser.parse_args()
    mlflow.set_tracking_uri(None)
    cost = sample_cost(args.samples)
    step = measure({"preset": "demo"}, 64, args.steps, torch.device("cpu"))
    step_s = step["batch"] / step["images_per_s"]
    share = cost["wall_ms_per_sample"] / 1e3 / args.interval
    result = {
        "machine": machine(),
        "interval_s": args.interval,
        **cost,
        "demo_step_s": step_s,
        "share_of_each_step": share,
        "target_share": 0.01,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "system_metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    print(  # noqa: T201 - benchmark output
        f"one sample: {cost['wall_ms_per_sample']:.1f} ms wall, {cost['cpu_ms_per_sample']:.1f} ms CPU; "
        f"every {args.interval:g} s that is {100 * share:.3f}% of each demo step ({step_s * 1e3:.0f} ms), "
        f"target < 1%"
    )


if __name__ == "__main__":
    main()
