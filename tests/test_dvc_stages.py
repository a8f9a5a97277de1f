"""`dvc repro` runs the coarse stages (each a `kedro run`) and records params and metrics."""

import json

import pytest
import yaml

from tests.project_copy import make_project_copy, run_in

pytestmark = pytest.mark.slow


def test_dvc_repro_runs_the_stages_and_reports_metrics(tmp_path):
    project = make_project_copy(tmp_path / "project")
    # Make the stages small: the ci preset on a small synthetic set, through the param files
    # (DVC only sees parameters that live in files).
    pretrain = project / "conf" / "base" / "parameters_pretrain.yml"
    params = yaml.safe_load(pretrain.read_text())
    params["pretrain"]["preset"] = "ci"
    pretrain.write_text(yaml.safe_dump(params))
    data = project / "conf" / "base" / "parameters_data_ingestion.yml"
    params = yaml.safe_load(data.read_text())
    params["data"]["synthetic"].update(train_per_class=30, val_per_class=10)
    data.write_text(yaml.safe_dump(params))

    result = run_in(project, "dvc", "repro")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    assert set(lock["stages"]) == {"data", "pretrain", "evaluate"}
    assert lock["stages"]["pretrain"]["params"]["conf/base/parameters_pretrain.yml"]["pretrain"]["preset"] == "ci"

    shown = run_in(project, "dvc", "metrics", "show", "--json")
    metrics = json.loads(shown.stdout)[""]["data"]["data/08_reporting/metrics.json"]["data"]
    assert 0.0 <= metrics["knn_top1"] <= 1.0

    status = run_in(project, "dvc", "status")
    assert "up to date" in status.stdout
