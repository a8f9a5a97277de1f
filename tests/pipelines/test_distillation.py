"""Distillation (``pretrain.distill_from``) through Kedro's runner: a ci-preset teacher is trained and
registered in a sqlite registry, then a smaller student is distilled from ``@challenger`` by a real
training process, registered under its own name with its lineage, and gated against its teacher."""

import hashlib
import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from dinoflow.config.pipeline_params import Gates, PromoteParams, RegisterParams
from dinoflow.pipelines.pretrain import create_pipeline as pretrain
from dinoflow.pipelines.promote import create_pipeline as promote
from dinoflow.pipelines.register import create_pipeline as register
from dinoflow.registry.mlflow_registry import download_backbone_files, registered_version
from dinoflow.tracking import mlflow_run
from dinoflow.train.distill import RECORD_NAME
from dinoflow.train.run_files import BACKBONE_NAME, HEAD_NAME, TEACHER_DIR
from tests.pipelines.test_continual_pretraining import MODEL, make_catalog
from tests.runner import run_pipeline

STUDENT = "ci-student"
GATES = dict(max_knn_drop=0.01, max_seg_drop=0.01, require_validation_passed=True, forbid_collapse=False,
             first_min_gain_over_random_init=0.01)  # fmt: skip


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_a_smaller_student_is_distilled_from_the_registered_teacher_and_gated_against_it(
    tiny_shards, tmp_path, mlflow_tmp
):
    catalog = make_catalog(tiny_shards, {"preset": "ci"}, tmp_path)
    assert run_pipeline(pretrain() + register(), catalog)["registration"].load()["version"] == "1"
    mlflow_run.end_run()

    # The student: the ci preset halved (32-dim, 1 block), same prototypes, on the distill recipe.
    params = {"preset": "ci", "recipe": "distill", "distill_from": f"models:/{MODEL}@challenger",
              "model": {"embed_dim": 32, "depth": 1}}  # fmt: skip
    run_id = mlflow_run.start_run(tmp_path, "test", "distill", tags={"git_sha": "test"})
    catalog = make_catalog(tiny_shards, params, tmp_path)
    catalog["params:register"] = RegisterParams(model_name=STUDENT, alias="challenger")
    # What evaluate would score (the evaluation itself is not under test): 90 % of the teacher's 0.5.
    catalog["metrics"] = {"knn_top1": 0.45, "knn_top1_random_init": 0.25}
    catalog["params:promote"] = PromoteParams(gates=Gates(**GATES, min_share_of_teacher_knn=0.8))
    outputs = run_pipeline(pretrain() + register() + promote(), catalog)
    assert outputs["promotion"].load()["decision"] == "promoted"

    # Registered under its own name, with the teacher's version and weights in its lineage.
    client = MlflowClient()
    teacher_files = download_backbone_files(registered_version(f"models:/{MODEL}/1"), tmp_path / "teacher")
    assert (teacher_files / HEAD_NAME).is_file()  # versions store the heads a distillation needs
    version = client.get_model_version(STUDENT, "1")
    assert version.tags["distilled_from"] == f"{MODEL}/1"
    assert version.tags["teacher_weights_sha256"] == sha256(teacher_files / BACKBONE_NAME)
    assert client.get_run(run_id).data.tags["distilled_from"] == f"{MODEL}/1"
    assert f"distilled from `{MODEL}/1`" in version.description

    # The teacher stayed frozen (digests at the first and last step) and the student is smaller.
    output_dir = tmp_path / "models" / client.get_run(run_id).data.tags["config_hash"]
    record = json.loads((output_dir / RECORD_NAME).read_text())
    assert record["teacher_sha256_start"] == record["teacher_sha256_end"]
    assert record["student_backbone_params"] < record["teacher_backbone_params"] / 2
    for name in (BACKBONE_NAME, HEAD_NAME):  # the teacher the run read is the registered one
        assert sha256(output_dir / TEACHER_DIR / name) == sha256(teacher_files / name)

    # The gate compared the student with its teacher and recorded why.
    reasons = version.tags["promotion.reasons"]
    assert f"k-NN share of teacher {MODEL}/1 0.9000 (0.4500 vs 0.5000, min 0.8000)" in reasons
    assert str(client.get_model_version_by_alias(STUDENT, "champion").version) == "1"
    assert str(client.get_model_version_by_alias(MODEL, "challenger").version) == "1"  # the teacher is untouched
