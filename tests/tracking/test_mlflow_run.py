"""What the MLflow UI shows of a pipeline run (the experiment's kind, the run's name and
description), checked through the client API on a real sqlite store."""

import time

from mlflow.tracking import MlflowClient

from dinoflow.tracking import mlflow_run
from dinoflow.tracking.mlflow_run import EXPERIMENT_KIND_TAG, MODEL_TRAINING
from tests.project_copy import new_mlflow_store


def test_the_experiment_is_created_as_a_model_training_experiment(mlflow_tmp):
    experiment = MlflowClient().get_experiment_by_name("test")
    assert experiment.tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING == "custom_model_development"
    assert MlflowClient().get_run(mlflow_tmp).info.experiment_id == experiment.experiment_id


def test_an_experiment_made_before_gets_the_kind_and_a_chosen_kind_stays(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", new_mlflow_store(tmp_path / "mlflow.db"))
    client = MlflowClient(mlflow_run.tracking_uri(tmp_path))
    old = client.create_experiment("old")
    chosen = client.create_experiment("chosen", tags={EXPERIMENT_KIND_TAG: "finetuning"})
    assert mlflow_run.ensure_experiment(tmp_path, "old") == old
    assert mlflow_run.ensure_experiment(tmp_path, "chosen") == chosen
    assert client.get_experiment(old).tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING
    assert client.get_experiment(chosen).tags[EXPERIMENT_KIND_TAG] == "finetuning"


def test_run_names_are_descriptive_unique_and_sort_by_preset_data_config_then_time():
    start = int(time.mktime((2026, 12, 4, 9, 5, 7, 0, 0, -1)) * 1000)
    name = mlflow_run.run_name("demo", "my photos/2026", "3fa2c1d4e5f6", start)
    assert name == "demo-my_photos_2026-3fa2c1-1204-090507"
    later = mlflow_run.run_name("demo", "my photos/2026", "3fa2c1d4e5f6", start + 1000)
    other = mlflow_run.run_name("demo", "my photos/2026", "000000ffffff", start + 1000)
    assert sorted([later, name, other]) == [other, name, later]


def test_the_run_is_named_after_what_it_trains_and_described_in_lines(mlflow_tmp):
    mlflow_run.set_tags({"data.root": "data/01_raw/synthetic"})
    name = mlflow_run.name_run("ci", "abcdef123456")
    run = MlflowClient().get_run(mlflow_tmp)
    assert run.info.run_name == name and name.startswith("ci-synthetic-abcdef-")
    mlflow_run.add_to_description(["first line"])
    mlflow_run.add_to_description(["second", "third"])
    note = MlflowClient().get_run(mlflow_tmp).data.tags[mlflow_run.NOTE_TAG]
    assert note == "first line  \nsecond  \nthird"  # markdown hard breaks: one paragraph


FLAT_TO_MLFLOW = {
    "loss": "train/loss",
    "loss_dino": "train/loss_dino",
    "lr": "train/lr",
    "teacher_temp": "train/teacher_temp",
    "epoch": "train/epoch",
    "teacher_entropy": "health/teacher_entropy",
    "loss_gap_to_ln_k": "health/loss_gap_to_ln_k",
    "collapse_one_prototype": "health/collapse_one_prototype",
    "images_per_s": "time/images_per_s",
    "stage_seconds.pretrain_node": "time/pretrain_node",
    "stage_seconds.pipeline": "time/pipeline",
    "knn_top1": "eval/knn_top1",
    "knn_top1_k20": "eval/knn_top1_k20",
    "knn_top1_raw_pixels": "eval/knn_top1_raw_pixels",
    "linear_top1_random_init": "eval/linear_top1_random_init",
    "seg_miou_majority": "eval/seg_miou_majority",
    "eval_val_images": "eval/eval_val_images",
    "online_knn_top1": "eval/online_knn_top1",
    "data_quarantined": "data/quarantined",
    "promotion.challenger.knn_top1": "promotion/challenger.knn_top1",
    "best_online_knn_top1": "tune/best_online_knn_top1",
    "trials": "tune/trials",
    "eval/knn_top1": "eval/knn_top1",  # already grouped
    "something_new": "something_new",  # unknown: as it is
}


def test_metric_names_are_grouped_for_the_ui():
    assert {key: mlflow_run.metric_name(key) for key in FLAT_TO_MLFLOW} == FLAT_TO_MLFLOW


def test_grouped_metrics_are_logged_and_read_back_by_their_mlflow_names(mlflow_tmp):
    mlflow_run.log_metrics({"knn_top1": 0.4, "stage_seconds.evaluate_node": 3.0})
    mlflow_run.log_metric_history([{"step": 1, "loss": 2.0, "teacher_entropy": 0.5}, {"step": 2, "loss": 1.5}])
    client = MlflowClient()
    metrics = client.get_run(mlflow_tmp).data.metrics
    assert metrics == {"eval/knn_top1": 0.4, "time/evaluate_node": 3.0, "train/loss": 1.5,
                       "health/teacher_entropy": 0.5}  # fmt: skip
    assert [m.step for m in client.get_metric_history(mlflow_tmp, "train/loss")] == [1, 2]
    experiment = client.get_run(mlflow_tmp).info.experiment_id
    (found,) = client.search_runs([experiment], "metrics.`eval/knn_top1` >= 0.3")  # as notebook 02 filters
    assert found.info.run_id == mlflow_tmp


def test_the_runs_data_is_a_dataset_input_with_its_fingerprint_and_dvc_md5(mlflow_tmp):
    mlflow_run.set_tags({"data.root": "data/01_raw/synthetic", "data.dvc_md5": "0123abcd.dir"})
    fingerprint = "f" * 12 + "0" * 52
    mlflow_run.log_dataset("training", "train", fingerprint, "data/05_model_input/dataset")
    mlflow_run.log_dataset("evaluation", "val", fingerprint, "data/05_model_input/dataset")
    inputs = MlflowClient().get_run(mlflow_tmp).inputs.dataset_inputs
    by_name = {i.dataset.name: (i.dataset, {t.key: t.value for t in i.tags}) for i in inputs}
    assert set(by_name) == {"synthetic/train", "synthetic/val"}
    dataset, tags = by_name["synthetic/train"]
    assert dataset.digest == "f" * 12 and dataset.source_type == "local"
    assert dataset.source == '{"uri": "data/01_raw/synthetic"}'
    assert tags == {"mlflow.data.context": "training", "fingerprint": fingerprint, "dvc_md5": "0123abcd.dir",
                    "shards": "data/05_model_input/dataset"}  # fmt: skip
    assert by_name["synthetic/val"][1]["mlflow.data.context"] == "evaluation"
