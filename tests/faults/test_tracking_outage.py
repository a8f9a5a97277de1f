"""The MLflow server goes down in the middle of training: training goes on, metrics wait on disk,
and every point reaches the run once the server is back."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from dinoflow.config import resolve_config, save_config, to_dict
from dinoflow.launch.local import training_command
from dinoflow.launch.training import replay_buffered_metrics
from dinoflow.tracking.mlflow_sink import PENDING_NAME
from tests.faults.test_preemption import logged_steps
from tests.servers import free_port, mlflow_server

pytestmark = [pytest.mark.slow, pytest.mark.faults]


# The waits below are on events (steps written by the trainer); the deadline only guards against a
# hang, so it is generous: a slow or busy CI machine must not turn a working run into a failure.
HANG_S = 600


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def start_training(tiny_config, tiny_shards, tmp_path: Path, url: str, run_id: str, epochs: int):
    section = to_dict(tiny_config)
    section["optim"]["epochs"] = epochs
    section["run"].update(checkpoint_every=10_000, loader_workers=0)
    config = save_config(resolve_config(section, {}), tmp_path / "config.yaml")
    out = tmp_path / "out"
    command = training_command(config, tiny_shards["dir"], out, 1, sinks=["mlflow"])
    env = {**__import__("os").environ, "MLFLOW_TRACKING_URI": url, "MLFLOW_RUN_ID": run_id}
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True), out


def steps_in_mlflow(run_id: str, key: str = "train/loss") -> list[int]:
    return sorted(m.step for m in MlflowClient().get_metric_history(run_id, key))


def test_server_outage_mid_run_loses_no_metric(tiny_config, tiny_shards, tmp_path, monkeypatch):
    backend, port = f"sqlite:///{tmp_path / 'server.db'}", free_port()
    with mlflow_server(backend, tmp_path / "artifacts", port=port) as url:
        mlflow.set_tracking_uri(url)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        run_id = MlflowClient().create_run(MlflowClient().create_experiment("outage")).info.run_id
        process, out = start_training(tiny_config, tiny_shards, tmp_path, url, run_id, epochs=16)  # 96 steps
        wait_until(lambda: len(logged_steps(out)) >= 20 or process.poll() is not None, HANG_S, "step 20")
        # Frozen while the server shuts down: a slow shutdown must not let training run to its end
        # before the outage starts (what made this test flaky).
        process.send_signal(signal.SIGSTOP)
    down_at = len(logged_steps(out))  # the server is gone from here on
    process.send_signal(signal.SIGCONT)
    wait_until(
        lambda: len(logged_steps(out)) >= down_at + 40 or process.poll() is not None,
        HANG_S,
        "40 steps during the outage",
    )
    assert process.poll() is None  # training did not stop for the outage
    assert (out / PENDING_NAME).exists()  # the undelivered points are on disk
    # Training is frozen while the server restarts, so that it is still running when the server is
    # back however slow the restart (otherwise this would test the end-of-run replay instead).
    process.send_signal(signal.SIGSTOP)
    with mlflow_server(backend, tmp_path / "artifacts", port=port):
        process.send_signal(signal.SIGCONT)
        output = process.communicate(timeout=300)[0]
        assert process.returncode == 0, output[-3000:]
        assert "buffering metrics" in output
        total = json.loads((out / "summary.json").read_text())["iterations"]
        assert steps_in_mlflow(run_id) == list(range(1, total + 1))  # every point, once
        assert not (out / PENDING_NAME).exists()


def test_points_undeliverable_at_the_end_stay_on_disk_and_are_replayed(tiny_config, tiny_shards, tmp_path, monkeypatch):
    backend, port = f"sqlite:///{tmp_path / 'server.db'}", free_port()
    with mlflow_server(backend, tmp_path / "artifacts", port=port) as url:
        run_id = MlflowClient(url).create_run(MlflowClient(url).create_experiment("outage")).info.run_id
    process, out = start_training(tiny_config, tiny_shards, tmp_path, url, run_id, epochs=2)  # server down all along
    output = process.communicate(timeout=300)[0]
    assert process.returncode == 0, output[-3000:]
    assert "could not reach MLflow; they are kept in" in output
    kept = (out / PENDING_NAME).read_text().splitlines()
    assert len(kept) == len(logged_steps(out)) == 12
    with mlflow_server(backend, tmp_path / "artifacts", port=port) as url:
        mlflow.set_tracking_uri(url)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        with mlflow.start_run(run_id=run_id):
            replay_buffered_metrics(out / PENDING_NAME)  # what the pretrain node does after training
        assert steps_in_mlflow(run_id) == list(range(1, 13))
    assert not (out / PENDING_NAME).exists()
