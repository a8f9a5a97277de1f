"""Metrics sink for a training process launched inside a pipeline's MLflow run.

Reads ``MLFLOW_TRACKING_URI`` and ``MLFLOW_RUN_ID`` from the environment (set by the launcher),
so rank 0 of a local or Kubernetes job logs into the run that the pipeline opened.
"""

from __future__ import annotations

import os
import time

from mlflow.entities import Metric
from mlflow.tracking import MlflowClient


class MlflowSink:
    def __init__(self) -> None:
        self.run_id = os.environ.get("MLFLOW_RUN_ID", "")
        if not self.run_id:
            raise RuntimeError("MlflowSink needs MLFLOW_RUN_ID (the run opened by the pipeline)")
        self.client = MlflowClient(tracking_uri=os.environ.get("MLFLOW_TRACKING_URI"))

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        batch = [Metric(key, float(value), now, step) for key, value in metrics.items()]
        self.client.log_batch(self.run_id, metrics=batch)

    def close(self) -> None:
        pass
