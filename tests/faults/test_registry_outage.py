"""The model registry fails at registration, after training and evaluation succeeded: the server's
artifact store turns read-only, or the server is gone. Registration tries a bounded number of
times, fails with a message naming the limit, keeps the trained run folder, and
``kedro run --pipelines register,promote`` registers it later without retraining."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from pathlib import Path

import mlflow
import pytest
import yaml
from mlflow.tracking import MlflowClient

from dinoflow.config.pipeline_params import EvaluateParams, RegisterParams
from dinoflow.contracts import DatasetIndex, PretrainResult
from dinoflow.pipelines.register.nodes import register_node
from dinoflow.registry.mlflow_registry import RegistrationFailedError
from dinoflow.train.run_files import BACKBONE_NAME
from tests.faults.test_torn_writes import small_volume
from tests.project_copy import kedro_run, make_project_copy
from tests.servers import mlflow_server

pytestmark = [pytest.mark.slow, pytest.mark.faults]

PARAMS = "pretrain.preset=ci,data.synthetic.train_per_class=20,data.synthetic.val_per_class=5,register.retry_wait_s=0.5"
UP_TO_EVALUATION = "data_ingestion,data_validation,curate,dataset,pretrain,evaluate"
REGISTER_LATER = ("--pipelines", "register,promote", "--params", PARAMS)
MODEL = "dinoflow-backbone"


def remount(volume: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(volume)], check=True)


def catalog_record(project: Path, relative: str) -> dict:
    return json.loads((project / relative).read_text())


def test_a_refused_registration_keeps_the_run_and_registers_later_without_retraining(tmp_path, monkeypatch):
    project = make_project_copy(tmp_path / "project")
    with small_volume(tmp_path / "artifacts", "128m") as artifacts:
        with mlflow_server(f"sqlite:///{tmp_path / 'server.db'}", artifacts) as url:
            env = {"MLFLOW_TRACKING_URI": url}
            trained = kedro_run(project, "--pipelines", UP_TO_EVALUATION, "--params", PARAMS, env=env)
            assert trained.returncode == 0, (trained.stdout + trained.stderr)[-4000:]
            result = catalog_record(project, "data/06_models/pretrain_result.json")
            run_folder = Path(result["output_dir"])
            if not run_folder.is_absolute():
                run_folder = project / run_folder

            remount(artifacts, "ro")  # the server answers, its artifact root refuses every write
            try:
                refused = kedro_run(project, *REGISTER_LATER, env=env)
            finally:
                remount(artifacts, "rw")
            output = refused.stdout + refused.stderr
            assert refused.returncode != 0
            assert "RegistrationFailedError" in output and "failed on all 3 tries" in output, output[-4000:]
            assert "register.attempts = 3" in output and "register.retry_wait_s = 0.5 s" in output
            assert output.count("registration try") == 2  # two warnings, then the failure
            assert "kedro run --pipelines register,promote" in output and str(result["output_dir"]) in output
            assert (run_folder / BACKBONE_NAME).is_file()

            mlflow.set_tracking_uri(url)
            client = MlflowClient()
            assert client.search_model_versions(f"name = '{MODEL}'") == []
            runs = client.search_runs(
                [client.get_experiment_by_name("dinoflow").experiment_id], order_by=["start_time"]
            )
            assert [r.info.status for r in runs] == ["FINISHED", "FAILED"]
            failed = runs[1:]
            assert set(failed[0].data.tags["kedro.pipelines"].split(",")) == {"register", "promote"}
            assert "RegistrationFailedError" in failed[0].data.tags["error"]

            later = kedro_run(project, *REGISTER_LATER, env=env)
            assert later.returncode == 0, (later.stdout + later.stderr)[-4000:]
            assert "resumed from" not in later.stdout + later.stderr  # no training ran
            versions = client.search_model_versions(f"name = '{MODEL}'")
            assert [v.version for v in versions] == ["1"]
            assert catalog_record(project, "data/08_reporting/registration.json")["version"] == "1"
            assert catalog_record(project, "data/08_reporting/promotion.json")["challenger"] in (
                1,
                "1",
            )  # promote ran on it
            assert versions[0].tags["weights_sha256"]  # registered with its evidence in one call

            monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # the test's own calls, once the server is gone
            mlflow.start_run(experiment_id=client.get_experiment_by_name("dinoflow").experiment_id)
        # The server is gone now: it stopped between training and this registration.
        monkeypatch.chdir(project)  # the catalog records hold project-relative paths
        inputs = [
            PretrainResult.model_validate(result),  # as the catalog loads them
            catalog_record(project, "data/08_reporting/metrics.json"),
            catalog_record(project, "data/08_reporting/validation_report.json"),
            catalog_record(project, "data/01_raw/source.json"),
            DatasetIndex.model_validate(catalog_record(project, "data/05_model_input/dataset/index.json")),
            RegisterParams(model_name=MODEL, alias="challenger", attempts=2, retry_wait_s=0.2),
            EvaluateParams(**yaml.safe_load((project / "conf/base/parameters_evaluate.yml").read_text())["evaluate"]),
        ]
        started = time.monotonic()
        try:
            with pytest.raises(RegistrationFailedError, match="failed on all 2 tries.*are kept"):
                register_node(*inputs)
        finally:
            with contextlib.suppress(Exception):
                mlflow.end_run()
            mlflow.set_tracking_uri(None)
        assert time.monotonic() - started < 60, "the tries were not bounded"
