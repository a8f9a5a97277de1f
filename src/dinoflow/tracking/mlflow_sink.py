"""Metrics sink for a training process launched inside a pipeline's MLflow run.

Reads ``MLFLOW_TRACKING_URI`` and ``MLFLOW_RUN_ID`` from the environment (set by the launcher),
so rank 0 of a local or Kubernetes job logs into the run that the pipeline opened.

A tracking outage never stops training: records that cannot be delivered are kept, in order, in
``<output>/mlflow_pending.jsonl`` and sent as soon as the server answers again (retried with
back-off, at the latest when training ends). Whatever is still undeliverable at the end stays in
that file, and the pretrain node replays it into the run once the server is back.

Metric names get their MLflow group on the way out (``mlflow_run.metric_name``); the pending file
keeps the flat keys of ``metrics.jsonl``.

The sink also samples the machine it trains on (MLflow's system metrics: CPU, memory, disk, network,
GPU when ``nvidia-ml-py`` is installed) into the run's ``system/`` charts, every
``DINOFLOW_SYSTEM_METRICS_INTERVAL_S`` seconds (set from ``pretrain_launcher.system_metrics_interval_s``;
0 = off). One sample costs milliseconds (``benchmarks/system_metrics.py``). MLflow stops sampling
for good when the server does not answer; training goes on.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from mlflow.entities import Metric
from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor
from mlflow.tracking import MlflowClient

from dinoflow.atomic import atomic_path
from dinoflow.tracking.mlflow_run import SYSTEM_METRICS_ENV, metric_name

PENDING_NAME = "mlflow_pending.jsonl"
DEFAULT_SYSTEM_METRICS_INTERVAL_S = 10.0
log = logging.getLogger(__name__)


class MlflowSink:
    def __init__(self, output_dir: Path, first_retry_s: float = 2.0, max_retry_s: float = 60.0) -> None:
        self.run_id = os.environ.get("MLFLOW_RUN_ID", "")
        if not self.run_id:
            raise RuntimeError("MlflowSink needs MLFLOW_RUN_ID (the run opened by the pipeline)")
        # Fail fast instead of the client's minutes of retries: the queue below does the retrying.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
        self.client = MlflowClient(tracking_uri=os.environ.get("MLFLOW_TRACKING_URI"))
        self.pending_path = Path(output_dir) / PENDING_NAME
        self.pending: list[dict] = read_pending(self.pending_path)  # left by an earlier, crashed attempt
        self.first_retry_s, self.max_retry_s = first_retry_s, max_retry_s
        self.retry_at, self.backoff = 0.0, first_retry_s
        self.system_metrics = start_system_metrics(self.run_id, self.client.tracking_uri)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.pending.append({"step": step, "time_ms": int(time.time() * 1000), **metrics})
        if time.monotonic() >= self.retry_at:
            self._deliver()
        if self.pending:
            self._persist()

    def _deliver(self) -> None:
        while self.pending:
            record = self.pending[0]
            batch = [Metric(metric_name(k), float(v), record["time_ms"], record["step"]) for k, v in record.items()
                     if k not in ("step", "time_ms")]  # fmt: skip
            try:
                self.client.log_batch(self.run_id, metrics=batch)
            except Exception as error:  # noqa: BLE001 (any transport or server error means "later")
                if self.backoff == self.first_retry_s:
                    log.warning(
                        "MLflow unreachable (%s); buffering metrics in %s", type(error).__name__, self.pending_path
                    )
                self.retry_at = time.monotonic() + self.backoff
                self.backoff = min(self.backoff * 2, self.max_retry_s)
                return
            self.pending.pop(0)
        if self.backoff != self.first_retry_s:
            log.warning("MLflow reachable again; buffered metrics delivered")
        self.retry_at, self.backoff = 0.0, self.first_retry_s
        self.pending_path.unlink(missing_ok=True)

    def _persist(self) -> None:
        with atomic_path(self.pending_path, "buffered metrics") as tmp:
            tmp.write_text("".join(json.dumps(r) + "\n" for r in self.pending))

    def close(self) -> None:
        if self.system_metrics is not None:
            self.system_metrics.finish()
        self._deliver()
        if self.pending:
            self._persist()
            log.error("%d metric records could not reach MLflow; they are kept in %s", len(self.pending),
                      self.pending_path)  # fmt: skip


def start_system_metrics(run_id: str, tracking_uri: str) -> SystemMetricsMonitor | None:
    """Sample the machine into ``run_id`` on a background thread (None when switched off or MLflow
    cannot start it: system charts are worth a warning, never a failed run)."""
    interval_s = float(os.environ.get(SYSTEM_METRICS_ENV, DEFAULT_SYSTEM_METRICS_INTERVAL_S))
    if interval_s <= 0:
        return None
    try:
        # resume_logging: a resumed training process continues the system charts' steps.
        monitor = SystemMetricsMonitor(run_id, sampling_interval=interval_s, resume_logging=True,
                                       tracking_uri=tracking_uri)  # fmt: skip
    except Exception as error:  # noqa: BLE001 (e.g. the server is down at start)
        log.warning("system metrics are off for this run: %s: %s", type(error).__name__, error)
        return None
    monitor.start()
    return monitor


def read_pending(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
