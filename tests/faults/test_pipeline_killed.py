"""`kedro run` itself SIGKILLed (the OOM killer, a drained node) during each node in turn: nothing
keeps running orphaned, each re-run picks up what the killed one left (training resumes from its
checkpoint), exactly one version is registered in the end, and every killed run's MLflow run ends
KILLED instead of staying RUNNING."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import mlflow
import psutil
import pytest
from mlflow.tracking import MlflowClient

from dinoflow.train.checkpoint import load_checkpoint
from tests.project_copy import bin_path, command_env, kedro_run, make_project_copy

pytestmark = [pytest.mark.slow, pytest.mark.faults]

PARAMS = ",".join(
    [
        "pretrain.preset=ci",
        "pretrain.optim.epochs=12",  # 72 iterations: killed after the first checkpoint, at 5
        "pretrain.run.checkpoint_every=5",
        "data.synthetic.train_per_class=20",
        "data.synthetic.val_per_class=5",
    ]
)
# In the order the default pipeline runs them; pretrain_node is killed once it has checkpointed.
NODES = (
    "materialize_source_node",
    "build_manifest_node",
    "validate_manifest_node",
    "build_dataset_node",
    "pretrain_node",
    "evaluate_node",
    "register_node",
    "promote_node",
)


def kill_during(project: Path, node: str, log: Path) -> tuple[int, list[psutil.Process], list[str]]:
    """Start ``kedro run``, SIGKILL it (it alone) once ``node`` runs; returns its pid, the processes
    it had started and their command lines."""
    with log.open("w") as out:
        pipeline = subprocess.Popen([bin_path("kedro"), "run", "--params", PARAMS], cwd=project,
                                    env={**command_env(), "PYTHONUNBUFFERED": "1"}, stdout=out,
                                    stderr=subprocess.STDOUT)  # fmt: skip
    checkpoints = project / "data" / "06_models" / "pretrain"

    def node_running() -> bool:
        if node == "pretrain_node":
            return any(load_checkpoint(c)["iteration"] > 0 for c in checkpoints.glob("*/checkpoint.pt"))
        return f"Running node: {node}" in log.read_text()

    deadline = time.monotonic() + 300
    while not node_running():
        assert pipeline.poll() is None, f"kedro ended before {node}: {log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"{node} never started"
        time.sleep(0.05)
    children = psutil.Process(pipeline.pid).children(recursive=True)
    commands = [" ".join(child.cmdline()) for child in children]
    os.kill(pipeline.pid, signal.SIGKILL)  # only the pipeline process, as the OOM killer does
    pipeline.wait()
    return pipeline.pid, children, commands


def running_in(project: Path) -> list[psutil.Process]:
    """Processes working in ``project``: also those started after a snapshot of the children."""
    found = []
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if Path(process.cwd()) == project:
                found.append(process)
    return found


def test_a_pipeline_killed_in_each_node_leaves_no_orphan_and_the_rerun_completes_once(tmp_path):
    project = make_project_copy(tmp_path / "project")
    killed_pids, stopped_at = [], 0
    for node in NODES:
        pid, children, commands = kill_during(project, node, tmp_path / f"{node}.log")
        killed_pids.append(pid)
        _, orphans = psutil.wait_procs([*children, *running_in(project)], timeout=60)
        assert orphans == [], f"{orphans} kept running after kedro was killed in {node}"
        if node == "pretrain_node":
            assert any("dinoflow.train" in command for command in commands)  # the trainer was among them
            (checkpoint,) = (project / "data" / "06_models" / "pretrain").glob("*/checkpoint.pt")
            stopped_at = load_checkpoint(checkpoint)["iteration"]
        if node == "evaluate_node":  # the run after the training kill finished the training first
            resumed_at = re.search(r"resumed from \S+ at iteration (\d+)", (tmp_path / f"{node}.log").read_text())
            assert resumed_at and int(resumed_at.group(1)) >= stopped_at > 0

    result = kedro_run(project, "--params", PARAMS)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert f"was left RUNNING by pipeline process {killed_pids[-1]}" in output

    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    try:
        client = MlflowClient()
        runs = client.search_runs([client.get_experiment_by_name("dinoflow").experiment_id], order_by=["start_time"])
        assert [r.info.status for r in runs] == ["KILLED"] * len(NODES) + ["FINISHED"]
        assert [f"pid {pid}" in r.data.tags["error"] for r, pid in zip(runs[:-1], killed_pids, strict=True)] == [
            True
        ] * len(NODES)
        assert [str(v.version) for v in client.search_model_versions("name = 'dinoflow-backbone'")] == ["1"]
    finally:
        mlflow.set_tracking_uri(None)
