"""A NaN loss in a real `kedro run`: the run stops naming the step, the MLflow run is FAILED, and
the last good checkpoint is still there to resume from."""

from __future__ import annotations

import json

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from dinoflow.train.checkpoint import load_checkpoint
from tests.project_copy import kedro_run, make_project_copy

pytestmark = [pytest.mark.slow, pytest.mark.faults]

PARAMS = "pretrain.preset=ci,pretrain.run.checkpoint_every=2,data.synthetic.train_per_class=20,data.synthetic.val_per_class=5"


def test_injected_nan_stops_the_run_and_marks_it_failed(tmp_path):
    project = make_project_copy(tmp_path / "project")
    result = kedro_run(project, "--pipelines", "data_ingestion,data_validation,curate,dataset,pretrain", "--params", PARAMS,
                       env={"DINOFLOW_FAILPOINTS": "nan_loss@4"})  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "loss is nan at iteration 4; last checkpoint kept" in output

    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    client = MlflowClient()
    (run,) = client.search_runs([client.get_experiment_by_name("dinoflow").experiment_id])
    assert run.info.status == "FAILED" and "TrainingFailedError" in run.data.tags["error"]
    assert "loss is nan at iteration 4" in run.data.tags["error"]
    (checkpoint_dir,) = (project / "data" / "06_models" / "pretrain").iterdir()
    assert load_checkpoint(checkpoint_dir / "checkpoint.pt")["iteration"] == 4  # iterations 0-3 saved
    assert not (checkpoint_dir / "summary.json").exists()
    assert [json.loads(line)["step"] for line in (checkpoint_dir / "metrics.jsonl").read_text().splitlines()][-1] <= 4
    mlflow.set_tracking_uri(None)
