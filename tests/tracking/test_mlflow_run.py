"""What the MLflow UI shows of a pipeline run: the experiment's kind, checked through the client
API on a real sqlite store."""

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
