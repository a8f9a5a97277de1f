"""The Kubernetes launcher's control flow against a fake API server on loopback (see
``fake_kube_api``): submit, follow rank 0, surface a failure, cancel on Ctrl-C, dry run."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

import kubernetes_validate
import pytest
import yaml

from dinoflow.config import to_dict
from dinoflow.config.pipeline_params import KubernetesParams, LauncherParams
from dinoflow.contracts import DatasetIndex
from dinoflow.launch.kubernetes import run_job
from dinoflow.launch.local import TrainingFailedError
from dinoflow.launch.manifests import render_training_job
from dinoflow.launch.remote import RunNotHereError
from dinoflow.pipelines.evaluate.nodes import evaluate_node
from tests.eval.test_protocol import project_params
from tests.k8s.pod_security import restricted_violations
from tests.launch.fake_kube_api import FakeKubeApi
from tests.project_copy import PROJECT_ROOT
from tests.runner import pretrain as run_pretrain

K8S_VERSION = "1.33.0"
BASE = PROJECT_ROOT / "k8s" / "base"


@pytest.fixture
def documents():
    params = KubernetesParams(namespace="team-a", nodes=3, tracking_uri="http://mlflow.team-a:5000")
    return render_training_job(BASE, "abc123", "optim:\n  epochs: 2\n", params, 1, params.tracking_uri, "run-1")


def start(scenario: str, tmp_path, monkeypatch) -> FakeKubeApi:
    api = FakeKubeApi(scenario)
    monkeypatch.setenv("KUBECONFIG", str(api.kubeconfig(tmp_path / "kubeconfig")))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    return api


def test_rendered_objects_validate_and_point_at_the_run(documents):
    config_map, service, job = documents
    for doc in documents:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    pod = job["spec"]["template"]["spec"]
    assert restricted_violations(pod) == []
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == 3
    assert service["spec"]["selector"] == {"job-name": "dinoflow-abc123"} and pod["subdomain"] == "dinoflow-abc123"
    args = pod["containers"][0]["args"]
    assert "--rdzv-endpoint=dinoflow-abc123-0.dinoflow-abc123:29500" in args and "--nnodes=3" in args
    assert args[args.index("--output") + 1] == "/checkpoints/abc123"
    assert config_map["data"]["config.yaml"] == "optim:\n  epochs: 2\n"
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert (
        env["MLFLOW_TRACKING_URI"]["value"] == "http://mlflow.team-a:5000" and env["MLFLOW_RUN_ID"]["value"] == "run-1"
    )
    assert "value" not in env["MLFLOW_TRACKING_PASSWORD"]  # by Secret reference only


def test_credentials_in_the_tracking_uri_are_refused():
    params = KubernetesParams(tracking_uri="http://alice:hunter2@mlflow:5000")
    with pytest.raises(ValueError, match="tracking_uri must not contain credentials"):
        render_training_job(BASE, "k", "", params, 1, params.tracking_uri, "r")


def test_a_successful_job_streams_rank0_and_returns(documents, tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="dinoflow.launch.kubernetes")
    with start("succeed", tmp_path, monkeypatch) as api:
        outcome = run_job(documents, "fake", timeout_s=60, poll_s=0.05)
    assert outcome.name == "dinoflow-abc123" and outcome.namespace == "team-a"
    job_uid = api.objects[("jobs", "dinoflow-abc123")]["metadata"]["uid"]
    for kind in ("configmaps", "services"):  # owned by the Job: deleting it removes them
        assert api.objects[(kind, "dinoflow-abc123")]["metadata"]["ownerReferences"][0]["uid"] == job_uid
    assert "it 4/4 loss=4.9" in caplog.text  # rank 0's log, streamed
    assert not [r for r in api.requests if r[0] == "DELETE"]


def test_a_failed_pod_is_reported_with_its_events_and_log(documents, tmp_path, monkeypatch):
    with start("fail", tmp_path, monkeypatch) as api, pytest.raises(TrainingFailedError) as failure:
        run_job(documents, "fake", timeout_s=60, poll_s=0.05)
    report = str(failure.value)
    assert "dinoflow-abc123-1-abcde: container train exited 1 (Error)" in report
    assert "BackOff: Back-off restarting failed container" in report
    assert "RuntimeError: CUDA out of memory on rank 1" in report
    assert ("jobs", "dinoflow-abc123") in api.objects  # kept for `kubectl describe`


def test_ctrl_c_deletes_the_job_and_what_it_owns(documents, tmp_path, monkeypatch):
    with start("hang", tmp_path, monkeypatch) as api:

        def press_ctrl_c_once_waiting() -> None:  # as a user would, once the Job is being followed
            while not any(path.endswith("/status") for _, path in list(api.requests)):
                time.sleep(0.01)
            os.kill(os.getpid(), signal.SIGINT)

        threading.Thread(target=press_ctrl_c_once_waiting, daemon=True).start()
        handler = signal.getsignal(signal.SIGINT)
        with pytest.raises(KeyboardInterrupt):
            run_job(documents, "fake", timeout_s=60, poll_s=0.05)
        assert signal.getsignal(signal.SIGINT) is handler  # the launcher's own handler is gone again
    assert api.objects == {}
    deleted = {path.rsplit("/", 2)[-2] for method, path in api.requests if method == "DELETE"}
    assert deleted == {"jobs", "services", "configmaps"}


def test_a_job_past_its_time_limit_is_deleted(documents, tmp_path, monkeypatch):
    with start("hang", tmp_path, monkeypatch) as api, pytest.raises(TrainingFailedError, match="exceeded"):
        run_job(documents, "fake", timeout_s=0.3, poll_s=0.05)
    assert api.objects == {}


def test_dry_run_from_the_pretrain_pipeline_writes_valid_manifests(tiny_shards, tiny_config, tmp_path, mlflow_tmp,
                                                               monkeypatch):  # fmt: skip
    monkeypatch.chdir(PROJECT_ROOT)  # the node renders from k8s/base, as `kedro run` does
    launcher = LauncherParams(kind="kubernetes", nproc_per_node=1, timeout_s=60, output_root=str(tmp_path / "models"),
                              kubernetes=KubernetesParams(dry_run=True, manifests_dir=str(tmp_path / "k8s")))  # fmt: skip
    result, curve = run_pretrain(DatasetIndex.model_validate(tiny_shards), to_dict(tiny_config), {}, launcher)
    assert result.dry_run is True and curve.empty
    documents = list(yaml.safe_load_all(open(result.manifests)))
    assert [d["kind"] for d in documents] == ["ConfigMap", "Service", "Job"]
    for doc in documents:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    env = {e["name"] for e in documents[2]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "MLFLOW_TRACKING_URI" not in env  # a sqlite store is not reachable from pods
    assert yaml.safe_load(documents[0]["data"]["config.yaml"])["optim"]["epochs"] == tiny_config.optim.epochs
    with pytest.raises(RunNotHereError, match=r"evaluate needs .*dry_run is true.*only rendered to .*\.yaml.*pvc://"):
        evaluate_node(DatasetIndex.model_validate(tiny_shards), result, curve, project_params())


def test_a_dry_run_renders_its_manifests_even_when_the_same_run_finished_here(tiny_shards, tiny_config, tmp_path,
                                                                               mlflow_tmp, monkeypatch):  # fmt: skip
    monkeypatch.chdir(PROJECT_ROOT)
    local = LauncherParams(kind="local", nproc_per_node=1, timeout_s=300, output_root=str(tmp_path / "models"))
    trained, _ = run_pretrain(DatasetIndex.model_validate(tiny_shards), to_dict(tiny_config), {}, local)
    dry = local.model_copy(update={"kind": "kubernetes", "kubernetes": KubernetesParams(
        dry_run=True, manifests_dir=str(tmp_path / "k8s"))})  # fmt: skip
    reused, curve = run_pretrain(DatasetIndex.model_validate(tiny_shards), to_dict(tiny_config), {}, dry)
    assert reused.config == trained.config and not curve.empty  # the finished run, ready to evaluate
    assert [p.name for p in (tmp_path / "k8s").iterdir()] == [f"dinoflow-{trained.config_hash}.yaml"]
