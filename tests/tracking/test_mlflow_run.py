"""What the MLflow UI shows of a pipeline run (the experiment's kind, the run's name and
description), checked through the client API on a real sqlite store."""

import time

from mlflow.tracking import MlflowClient

from dinoflow.tracking import mlflow_run
from dinoflow.tracking.mlflow_run import EXPERIMENT_KIND_TAG, MODEL_TRAINING


def test_the_experiment_is_created_as_a_model_training_experiment(mlflow_tmp):
    experiment = MlflowClient().get_experiment_by_name("test")
    assert experiment.tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING == "custom_model_development"
    assert MlflowClient().get_run(mlflow_tmp).info.experiment_id == experiment.experiment_id


def test_an_experiment_made_before_gets_the_kind_and_a_chosen_kind_stays(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
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
