"""Credentials handed to a run (in the tracking URI and in the Optuna storage URL) appear in no log
line, MLflow param, tag, description or artifact, in nothing the project writes, and not in the
Kubernetes manifest the run renders: the pods get the server's address and a reference to the
tracking Secret."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import yaml

from tests.project_copy import kedro_run, make_project_copy
from tests.servers import mlflow_server

pytestmark = [pytest.mark.faults, pytest.mark.slow]
SECRET = f"s3cr3t-{uuid.uuid4().hex}"  # drawn per run: no source file can hold it


def files_holding(root: Path, needle: bytes) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_credentials_reach_no_log_run_artifact_file_or_manifest(tmp_path):
    project = make_project_copy(tmp_path / "project")
    store = tmp_path / "server"
    store.mkdir()
    params = ",".join(
        [
            "data.synthetic.train_per_class=12",
            "data.synthetic.val_per_class=6",
            f"tune.storage=postgresql+psycopg2://optuna:{SECRET}@db.internal:5432/optuna",
            "pretrain_launcher.kind=kubernetes",
            "pretrain_launcher.kubernetes.dry_run=true",
        ]
    )
    with mlflow_server(f"sqlite:///{store / 'mlflow.db'}", store / "artifacts") as url:
        authed = url.replace("http://", f"http://alice:{SECRET}@")
        result = kedro_run(
            project,
            "--pipelines",
            "data_ingestion,data_validation,curate,dataset,pretrain",
            "--params",
            params,
            env={"MLFLOW_TRACKING_URI": authed},
        )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert SECRET not in result.stdout + result.stderr
    # Everything MLflow stored (params, tags, descriptions, dataset inputs) and every artifact.
    assert files_holding(store, SECRET.encode()) == []
    assert files_holding(project, SECRET.encode()) == []
    # The pods reach the same server by address, with credentials from the Secret by reference.
    (manifest,) = (project / "data" / "06_models" / "k8s").glob("*.yaml")
    documents = list(yaml.safe_load_all(manifest.read_text()))
    env = {e["name"]: e for d in documents if d["kind"] == "Job" for c in _containers(d) for e in c["env"]}
    assert env["MLFLOW_TRACKING_URI"]["value"] == url
    assert env["MLFLOW_TRACKING_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "dinoflow-tracking"


def _containers(job: dict) -> list[dict]:
    return job["spec"]["template"]["spec"]["containers"]
