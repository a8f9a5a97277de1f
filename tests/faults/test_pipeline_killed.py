"""`kedro run` itself SIGKILLed mid-training (the OOM killer, a drained node): the training process
does not run on orphaned, the re-run resumes from its checkpoint and registers one version, and
the killed run's MLflow run ends KILLED instead of staying RUNNING."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

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
        "pretrain.optim.epochs=40",  # long enough to be killed in the middle
        "pretrain.run.checkpoint_every=5",
        "data.synthetic.train_per_class=20",
        "data.synthetic.val_per_class=5",
    ]
)


def test_a_killed_pipeline_stops_its_trainer_and_the_rerun_resumes_and_closes_the_killed_run(tmp_path):
    project = make_project_copy(tmp_path / "project")
    pipeline = subprocess.Popen([bin_path("kedro"), "run", "--params", PARAMS], cwd=project, env=command_env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    models = project / "data" / "06_models" / "pretrain"
    deadline = time.monotonic() + 300
    while not list(models.glob("*/checkpoint.pt")):
        assert pipeline.poll() is None and time.monotonic() < deadline, "training never checkpointed"
        time.sleep(0.5)
    trainers = psutil.Process(pipeline.pid).children(recursive=True)
    assert any("dinoflow.train" in " ".join(p.cmdline()) for p in trainers)

    os.kill(pipeline.pid, signal.SIGKILL)  # only the pipeline process, as the OOM killer does
    pipeline.wait()
    _, orphans = psutil.wait_procs(trainers, timeout=60)
    assert orphans == [], f"training kept running after its pipeline died: {orphans}"
    (checkpoint,) = models.glob("*/checkpoint.pt")
    stopped_at = load_checkpoint(checkpoint)["iteration"]
    assert stopped_at > 0

    result = kedro_run(project, "--params", PARAMS)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    resumed_at = int(re.search(r"resumed from \S+ at iteration (\d+)", output).group(1))
    assert resumed_at >= stopped_at
    assert "was left RUNNING by pipeline process" in output

    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    try:
        client = MlflowClient()
        runs = client.search_runs([client.get_experiment_by_name("dinoflow").experiment_id], order_by=["start_time"])
        assert [r.info.status for r in runs] == ["KILLED", "FINISHED"]
        assert f"pid {pipeline.pid}" in runs[0].data.tags["error"]
        assert [str(v.version) for v in client.search_model_versions("name = 'dinoflow-backbone'")] == ["1"]
    finally:
        mlflow.set_tracking_uri(None)
