"""The training process's MLflow sink samples the machine into the run's system charts."""

import time

from mlflow.tracking import MlflowClient

from dinoflow.tracking.mlflow_run import SYSTEM_METRICS_ENV
from dinoflow.tracking.mlflow_sink import MlflowSink


def test_the_sink_samples_cpu_and_memory_into_the_system_charts(mlflow_tmp, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_RUN_ID", mlflow_tmp)
    monkeypatch.setenv(SYSTEM_METRICS_ENV, "0.1")
    sink = MlflowSink(tmp_path)
    client = MlflowClient()
    sink.log_metrics({"loss": 1.0}, step=1)
    # Wait for the second sample, not for a fixed time: on a loaded machine 0.8 s once held only one.
    deadline = time.monotonic() + 60
    while len(client.get_metric_history(mlflow_tmp, "system/cpu_utilization_percentage")) < 2:
        assert time.monotonic() < deadline, "the sink logged fewer than 2 system samples in 60 s at a 0.1 s interval"
        time.sleep(0.1)
    sink.close()
    cpu = client.get_metric_history(mlflow_tmp, "system/cpu_utilization_percentage")
    assert len(cpu) >= 2 and all(0.0 <= m.value <= 100.0 for m in cpu)
    assert [m.step for m in cpu] == list(range(len(cpu)))
    assert client.get_metric_history(mlflow_tmp, "system/system_memory_usage_megabytes")[0].value > 0


def test_interval_zero_turns_system_metrics_off(mlflow_tmp, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_RUN_ID", mlflow_tmp)
    monkeypatch.setenv(SYSTEM_METRICS_ENV, "0")
    sink = MlflowSink(tmp_path)
    time.sleep(0.3)
    sink.close()
    assert sink.system_metrics is None
    assert not [k for k in MlflowClient().get_run(mlflow_tmp).data.metrics if k.startswith("system/")]
