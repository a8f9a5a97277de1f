"""Load: a real `mlflow server` on PostgreSQL takes metrics from 8 concurrent training-like runs
(100 steps each, within a time limit) on loopback, and every point arrives (counted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from mlflow.tracking import MlflowClient

from dinoflow.tracking.mlflow_run import metric_name
from tests.servers import mlflow_server, postgres_cluster

pytestmark = [pytest.mark.slow, pytest.mark.faults]
RUNS, STEPS, KEYS = 8, 100, ("loss", "lr", "teacher_entropy", "grad_norm")
TIME_LIMIT_S = 240  # the bound on the whole load; the points sent do not depend on the machine's speed

WORKER = textwrap.dedent(f"""
    import json, sys, time
    from dinoflow.tracking.mlflow_sink import MlflowSink
    sink = MlflowSink(sys.argv[1])
    start = time.monotonic()
    for step in range(1, {STEPS} + 1):
        sink.log_metrics({{k: step * 0.001 for k in {KEYS!r}}}, step)
        time.sleep(0.01)  # a training step's worth of pause
    sink.close()
    print(json.dumps({{"steps": {STEPS}, "pending": len(sink.pending), "seconds": time.monotonic() - start}}))
""")


def test_eight_concurrent_runs_lose_no_point(tmp_path):
    with postgres_cluster() as database, mlflow_server(database, tmp_path / "artifacts") as url:
        client = MlflowClient(url)
        experiment = client.create_experiment("load")
        run_ids = [client.create_run(experiment).info.run_id for _ in range(RUNS)]
        for i in range(RUNS):
            (tmp_path / f"w{i}").mkdir()
        workers = [
            subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path / f"w{i}")], text=True, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env={**os.environ, "MLFLOW_TRACKING_URI": url, "MLFLOW_RUN_ID": run})
            for i, run in enumerate(run_ids)
        ]  # fmt: skip
        reports = []
        for worker in workers:
            out, err = worker.communicate(timeout=TIME_LIMIT_S)
            assert worker.returncode == 0, err[-3000:]
            reports.append(json.loads(out.strip().splitlines()[-1]))
        sent = received = 0
        for run_id, report in zip(run_ids, reports, strict=True):
            assert report["pending"] == 0
            for key in KEYS:
                steps = sorted(m.step for m in client.get_metric_history(run_id, metric_name(key)))
                assert steps == list(range(1, report["steps"] + 1)), (run_id, key)
                received += len(steps)
            sent += report["steps"] * len(KEYS)
    slowest = max(report["seconds"] for report in reports)
    print(f"{RUNS} runs, slowest {slowest:.1f} s: {sent} points sent, {received} received")  # noqa: T201 (for the record)
    assert received == sent == RUNS * STEPS * len(KEYS)
