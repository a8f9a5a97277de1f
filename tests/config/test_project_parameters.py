"""The project's own parameter files load through Kedro's config loader and validate."""

import shutil

import pytest
import yaml
from kedro.config import OmegaConfigLoader

from dinoflow.config import resolve_config
from dinoflow.config.pipeline_params import (
    DataParams,
    DatasetParams,
    EmbedParams,
    EvaluateParams,
    LauncherParams,
    PromoteParams,
    RegisterParams,
    TunedParams,
    TuneParams,
    ValidationParams,
)
from dinoflow.settings import CONFIG_LOADER_ARGS
from tests.project_copy import PROJECT_ROOT

MODELS = {
    "data": DataParams, "validation": ValidationParams, "dataset": DatasetParams, "evaluate": EvaluateParams,
    "register": RegisterParams, "promote": PromoteParams, "tune": TuneParams, "pretrain_launcher": LauncherParams,
    "pretrain_tuned": TunedParams, "embed": EmbedParams,
}  # fmt: skip


def parameters(conf=PROJECT_ROOT / "conf", runtime_params=None) -> dict:
    return OmegaConfigLoader(conf_source=str(conf), runtime_params=runtime_params, **CONFIG_LOADER_ARGS)["parameters"]


def test_every_section_validates_and_every_preset_resolves(monkeypatch):
    monkeypatch.delenv("DINOFLOW_TUNE_STORAGE", raising=False)
    params = parameters()
    for key, model in MODELS.items():
        model.model_validate(params[key])
    for preset in params["pretrain_presets"]:
        resolve_config({"preset": preset}, params["pretrain_presets"])
    assert params["tune"]["storage"] == "sqlite:///data/07_model_output/optuna.db"


@pytest.mark.parametrize("url", ["postgresql+psycopg2://optuna:pw@db:5432/optuna"])
def test_the_tuning_database_comes_from_the_environment(monkeypatch, url):
    monkeypatch.setenv("DINOFLOW_TUNE_STORAGE", url)
    assert parameters()["tune"]["storage"] == url


def test_local_and_command_line_parameters_change_only_the_keys_they_name(tmp_path):
    """With a parameters file in conf/local, Kedro's default merge replaced whole sections: a later
    `--params data.source=...` left `data` with two keys, and validation failed."""
    conf = tmp_path / "conf"
    shutil.copytree(PROJECT_ROOT / "conf" / "base", conf / "base")
    (conf / "local").mkdir()
    (conf / "local" / "parameters_tune.yml").write_text(yaml.safe_dump({"tune": {"n_trials": 3}}))
    params, base = parameters(conf, {"data": {"source": "/photos", "dvc_track": False}}), parameters()
    data = DataParams.model_validate(params["data"])
    assert (data.source, data.dvc_track) == ("/photos", False)
    assert params["data"]["val_ratio"] == base["data"]["val_ratio"]
    tune = TuneParams.model_validate(params["tune"])
    assert tune.n_trials == 3 and tune.study_name == base["tune"]["study_name"]
