"""The registry flow against a real ``mlflow server`` on loopback, backed by sqlite and by
PostgreSQL: register, alias, promote, reject (champion unchanged, reason recorded), rollback,
and a consumer loading ``models:/<name>@champion``."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import torch
from mlflow.tracking import MlflowClient
from safetensors.torch import save_file

from dinoflow.config import save_config
from dinoflow.config.pipeline_params import EvaluateParams, Gates, PromoteParams, RegisterParams
from dinoflow.contracts import DatasetIndex
from dinoflow.eval.protocol import evaluation_protocol
from dinoflow.pipelines.promote.nodes import promote_node
from dinoflow.registry.mlflow_registry import register_backbone
from dinoflow.tracking import mlflow_run
from dinoflow.train.builders import build_backbone_from_config
from dinoflow.train.run_files import BACKBONE_NAME, RANDOM_INIT_NAME
from tests.project_copy import new_mlflow_store
from tests.servers import mlflow_server, postgres_cluster

pytestmark = pytest.mark.slow
NAME = "server-backbone"
LABELS = json.dumps(["circle", "square"])  # the label_set tag of the register node


@pytest.fixture(params=["sqlite", "postgresql"])
def server(request, tmp_path):
    backend = contextlib.nullcontext(f"sqlite:///{tmp_path / 'server.db'}")
    with (
        backend if request.param == "sqlite" else postgres_cluster() as uri,
        mlflow_server(uri, tmp_path / "artifacts") as url,
    ):
        yield url


def register(cfg, tmp_path: Path, validation: str, evidence: dict | None = None, scores: dict | None = None) -> str:
    """One pipeline-like run that registers the config's backbone as @challenger, with the files a
    run writes (its trained weights here are its random init) and, as the register node does,
    ``evidence`` (extra version tags) and ``scores`` (evaluation metrics linked to the logged model)."""
    backbone = build_backbone_from_config(cfg, drop_path=False)
    files = [save_config(cfg, tmp_path / "config.yaml"), tmp_path / BACKBONE_NAME, tmp_path / RANDOM_INIT_NAME]
    save_file(backbone.state_dict(), files[1])
    save_file(backbone.state_dict(), files[2])
    mlflow_run.start_run(tmp_path, "registry-test", "register", tags={})
    example = torch.randn(2, 3, 16, 16).numpy()
    tags = {"validation_status": validation, "collapsed": "false", "label_set": LABELS, **(evidence or {})}
    version = register_backbone(backbone, example, NAME, "challenger", tags, files, scores or {})["version"]
    mlflow_run.end_run()
    return version


def evaluate_params(tmp_path: Path) -> EvaluateParams:
    return EvaluateParams(
        knn_k=5, knn_ks=[5], knn_temperature=0.07, linear_epochs=1, segmentation_epochs=2, segmentation_lr=0.01,
        batch_size=16, pictures=0,
    )  # fmt: skip


def promote(tiny_shards, tmp_path: Path, **gates) -> dict:
    mlflow_run.start_run(tmp_path, "registry-test", "promote", tags={})
    try:
        return promote_node(
            {},
            DatasetIndex.model_validate(tiny_shards),
            RegisterParams(model_name=NAME, alias="challenger"),
            evaluate_params(tmp_path),
            PromoteParams(
                gates=Gates(
                    max_knn_drop=0.0,
                    max_seg_drop=0.0,
                    require_validation_passed=True,
                    forbid_collapse=True,
                    first_min_gain_over_random_init=-1.0,
                    **gates,
                )
            ),  # fmt: skip
        )
    finally:
        mlflow_run.end_run()


def test_register_promote_reject_rollback_and_load(server, tiny_config, tiny_shards, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    mlflow.set_tracking_uri(server)
    client = MlflowClient()

    v1 = register(tiny_config, tmp_path, "passed")
    first = promote(tiny_shards, tmp_path)
    assert first["decision"] == "promoted" and first["champion"] == v1 and first["champion_before"] is None
    assert client.get_model_version_by_alias(NAME, "champion").version == v1
    assert client.get_model_version(NAME, v1).tags["promotion.reasons"].startswith("data validation passed")

    v2 = register(tiny_config, tmp_path, "failed")  # bad data: the gate must hold it back
    rejected = promote(tiny_shards, tmp_path)
    assert rejected["decision"] == "rejected" and "data validation failed" in rejected["reasons"]
    assert client.get_model_version_by_alias(NAME, "champion").version == v1
    assert client.get_model_version(NAME, v2).tags["promotion.decision"] == "rejected"

    v3 = register(tiny_config, tmp_path, "passed")  # same weights: no worse on the same evaluation set
    second = promote(tiny_shards, tmp_path)
    assert second["decision"] == "promoted" and second["scores"]["challenger"] == second["scores"]["champion"]
    assert client.get_model_version(NAME, v3).tags["promotion.previous_champion"] == v1

    rollback = subprocess.run([sys.executable, "-m", "dinoflow.registry", "rollback", NAME],
                              capture_output=True, text=True, env={**__import__("os").environ})  # fmt: skip
    assert rollback.returncode == 0, rollback.stderr
    assert rollback.stdout.strip() == f"{NAME}@champion: v{v3} -> v{v1}"
    assert client.get_model_version_by_alias(NAME, "champion").version == v1

    model = mlflow.pytorch.load_model(f"models:/{NAME}@champion")  # what a consumer does
    embeddings = model(torch.randn(3, 3, 16, 16))
    assert embeddings.shape == (3, tiny_config.model.embed_dim)


def test_promote_reuses_scores_recorded_on_the_same_data_and_protocol(tiny_config, tiny_shards, tmp_path, monkeypatch):
    """The scores linked to a version's logged model stand in for re-scoring only when the dataset
    fingerprint and the evaluation protocol (its tags) match; otherwise the version is rebuilt and
    re-scored. The scores are read as numbers: the ``metric.*`` tags are for people and are not read."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", new_mlflow_store(tmp_path / "mlflow.db"))
    protocol = evaluation_protocol(evaluate_params(tmp_path))
    recorded = {"evaluation_protocol": protocol, "metric.knn_top1": "0.5"}  # a tag promote must not read
    scores = {"knn_top1": 0.777, "knn_top1_random_init": 0.111}

    register(tiny_config, tmp_path, "passed", {"data_fingerprint": tiny_shards["fingerprint"], **recorded}, scores)
    first = promote(tiny_shards, tmp_path)
    assert first["scored"] == {"challenger": "recorded", "random_init": "recorded"}
    assert first["scores"] == {"challenger": {"knn_top1": 0.777}, "random_init": {"knn_top1": 0.111}}
    assert first["decision"] == "promoted"

    register(tiny_config, tmp_path, "passed", {"data_fingerprint": "another-dataset", **recorded}, scores)
    second = promote(tiny_shards, tmp_path)
    assert second["scored"] == {"challenger": "re-scored", "champion": "recorded"}
    assert second["scores"]["challenger"]["knn_top1"] != 0.777  # measured, not read back
    assert second["scores"]["champion"]["knn_top1"] == 0.777

    stale = {**recorded, "evaluation_protocol": "older-protocol"}
    register(tiny_config, tmp_path, "passed", {"data_fingerprint": tiny_shards["fingerprint"], **stale}, scores)
    assert promote(tiny_shards, tmp_path)["scored"]["challenger"] == "re-scored"


def test_raw_pixel_gate_measures_raw_pixels_or_reuses_the_recorded_figure(
    tiny_config, tiny_shards, tmp_path, monkeypatch
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", new_mlflow_store(tmp_path / "mlflow.db"))
    register(tiny_config, tmp_path, "passed")  # a random-init backbone: no better than raw pixels
    measured = promote(tiny_shards, tmp_path, min_gain_over_raw_pixels=0.5)
    assert measured["decision"] == "rejected"
    reason = next(r for r in measured["reasons"] if "raw pixels" in r)
    assert "min +0.5000" in reason and "unknown" not in reason

    protocol = evaluation_protocol(evaluate_params(tmp_path))
    recorded = {"data_fingerprint": tiny_shards["fingerprint"], "evaluation_protocol": protocol}
    scores = {"knn_top1": 0.9, "knn_top1_random_init": 0.1, "knn_top1_raw_pixels": 0.6}
    register(tiny_config, tmp_path, "passed", recorded, scores)
    reused = promote(tiny_shards, tmp_path, min_gain_over_raw_pixels=0.2)
    assert "k-NN gain over raw pixels +0.3000 (0.9000 vs 0.6000, min +0.2000)" in reused["reasons"]


def test_promote_refuses_another_label_set_unless_allowed(tiny_config, tiny_shards, tmp_path, monkeypatch):
    """A champion trained for other class names (another data domain) is not replaced, and the
    reason is recorded, unless ``promote.gates.allow_label_set_change`` says so."""
    store = new_mlflow_store(tmp_path / "mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    client = MlflowClient(store)  # named: an earlier test's mlflow.set_tracking_uri outlives it
    protocol = evaluation_protocol(evaluate_params(tmp_path))
    recorded = {"data_fingerprint": tiny_shards["fingerprint"], "evaluation_protocol": protocol}
    v1 = register(tiny_config, tmp_path, "passed", recorded, {"knn_top1": 0.5, "knn_top1_random_init": 0.1})
    assert promote(tiny_shards, tmp_path)["decision"] == "promoted"

    clipart = json.dumps(["animals/mammals", "icons/flat"])
    v2 = register(
        tiny_config,
        tmp_path,
        "passed",
        {**recorded, "label_set": clipart},
        {"knn_top1": 0.9, "knn_top1_random_init": 0.1},
    )
    refused = promote(tiny_shards, tmp_path)
    reason = (
        f"label set differs from champion v{v1}'s: 2 classes vs 2, added animals/mammals, icons/flat, removed circle, "
        "square: use one registered model name per data domain, or set promote.gates.allow_label_set_change: true "
        "to promote across label sets"
    )
    assert refused["decision"] == "rejected" and reason in refused["reasons"]
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == v1
    tags = client.get_model_version(NAME, v2).tags
    assert tags["promotion.decision"] == "rejected" and reason in tags["promotion.reasons"].split("; ")
    assert f"- {reason}" in client.get_model_version(NAME, v2).description  # the scorecard lists it

    allowed = promote(tiny_shards, tmp_path, allow_label_set_change=True)  # the user asks for it
    assert allowed["decision"] == "promoted"
    assert any(r.endswith("allowed by promote.gates.allow_label_set_change") for r in allowed["reasons"])
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == v2
