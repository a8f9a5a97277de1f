"""What the run hook puts on the pipeline's MLflow run for each node output (real sqlite store)."""

import importlib
from types import SimpleNamespace

import mlflow
from mlflow.tracking import MlflowClient
from PIL import Image

from dinoflow.pipeline_registry import DEFAULT_FLOW
from dinoflow.tracking.run_page import LOGGERS, log_node_outputs


def test_every_logged_output_is_an_output_of_a_pipeline():
    outputs = set()
    for name in (*DEFAULT_FLOW, "tune", "embed"):
        outputs |= importlib.import_module(f"dinoflow.pipelines.{name}").create_pipeline().all_outputs()
    assert set(LOGGERS) <= outputs, set(LOGGERS) - outputs  # a misspelt name would never be logged


def test_outputs_without_a_logger_are_left_alone(mlflow_tmp):
    assert log_node_outputs({}, {"image_manifest": object(), "data_source": {"root": "/x", "kind": "folder"}}) == [
        "data_source"
    ]
    assert MlflowClient().get_run(mlflow_tmp).data.tags["data.root"] == "/x"


def test_a_promotion_is_charted_tagged_and_described(mlflow_tmp):
    record = {"model": "m", "challenger": "2", "champion": "1", "decision": "rejected", "reasons": ["k-NN worse"],
              "scores": {"challenger": {"knn_top1": 0.4}, "champion": {"knn_top1": 0.5, "seg_miou": 0.2}}}  # fmt: skip
    log_node_outputs({}, {"promotion": record})
    run = MlflowClient().get_run(mlflow_tmp)
    assert run.data.metrics == {"promotion/challenger.knn_top1": 0.4, "promotion/champion.knn_top1": 0.5,
                                "promotion/champion.seg_miou": 0.2}  # fmt: skip
    assert run.data.tags["promotion.decision"] == "rejected"
    assert run.data.tags["mlflow.note.content"] == "Promotion: v2 rejected -> @champion is v1  \n  - k-NN worse"


def test_an_unchanged_champion_is_only_described(mlflow_tmp):
    log_node_outputs({}, {"promotion": {"model": "m", "challenger": "1", "champion": "1", "decision": "unchanged"}})
    run = MlflowClient().get_run(mlflow_tmp)
    assert run.data.metrics == {} and "promotion.decision" not in run.data.tags
    assert run.data.tags["mlflow.note.content"] == "Promotion: v1 unchanged -> @champion is v1"


def test_a_tuning_summary_logs_the_study_its_plots_and_the_best_values(mlflow_tmp, tmp_path):
    plot = Image.new("RGB", (40, 30), "white")
    tune = SimpleNamespace(storage="postgresql://optuna:secret@db:5432/optuna", study_name="s1")  # params:tune
    summary = {"trials": 4, "complete": 3, "pruned": 1, "failed": 0, "best_value": 0.42,
               "best_params": {"loss.teacher_temp": 0.05}}  # fmt: skip
    outputs = {"tuning_summary": summary, "tuned_pretrain": {}, "tuning_plots": {"optimization_history": plot}}
    log_node_outputs({"params:tune": tune}, outputs)
    run = MlflowClient().get_run(mlflow_tmp)
    assert run.data.tags["optuna.storage"] == "postgresql://optuna:***@db:5432/optuna"
    assert run.data.tags["optuna.study"] == "s1" and run.data.params == {"best.loss.teacher_temp": "0.05"}
    assert run.data.metrics["tune/best_online_knn_top1"] == 0.42 and run.data.metrics["tune/pruned"] == 1
    assert [a.path for a in mlflow.MlflowClient().list_artifacts(mlflow_tmp, "tuning")] == [
        "tuning/optimization_history.png"
    ]
    logged = Image.open(mlflow.artifacts.download_artifacts(run_id=mlflow_tmp, artifact_path="tuning/optimization_history.png",
                                                           dst_path=str(tmp_path)))  # fmt: skip
    assert logged.size == (40, 30)
