"""Credentials in URLs never reach MLflow params or tags."""

import os

from mlflow.tracking import MlflowClient

from dinoflow.tracking.mlflow_run import flatten, log_params, redact, set_tags

SECRET_URL = "postgresql+psycopg2://optuna:s3cr3t-pw@db.internal:5432/optuna"


def test_redact_hides_the_password_and_keeps_the_rest():
    assert redact(SECRET_URL) == "postgresql+psycopg2://optuna:***@db.internal:5432/optuna"
    assert redact("http://user:p%40ss@host/x and https://a:b@c") == "http://user:***@host/x and https://a:***@c"
    assert redact("sqlite:///data/07_model_output/optuna.db") == "sqlite:///data/07_model_output/optuna.db"
    assert redact("user@host.example") == "user@host.example"  # no scheme, no password: unchanged


def test_params_and_tags_of_a_run_carry_no_password(mlflow_tmp):
    assert flatten({"tune": {"storage": SECRET_URL}}) == {"tune.storage": redact(SECRET_URL)}
    log_params({"tune": {"storage": SECRET_URL}})
    set_tags({"kedro.runtime_params": f"{{'tune.storage': '{SECRET_URL}'}}"})
    run = MlflowClient().get_run(mlflow_tmp)
    recorded = list(run.data.params.values()) + list(run.data.tags.values())
    assert not any("s3cr3t" in value for value in recorded)


def test_credentials_in_the_tracking_url_move_to_mlflows_auth_variables(tmp_path, monkeypatch):
    from dinoflow.tracking.mlflow_run import tracking_uri

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://alice:p%40ss-s3cr3t@mlflow.example:5000/base")
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    assert tracking_uri(tmp_path) == "https://mlflow.example:5000/base"
    assert os.environ["MLFLOW_TRACKING_URI"] == "https://mlflow.example:5000/base"  # children inherit it clean
    assert (os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"]) == ("alice", "p@ss-s3cr3t")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "postgresql://u:pw@db/x")  # not a server URL: left alone
    assert tracking_uri(tmp_path) == "postgresql://u:pw@db/x"
