"""The protocol name: what changes scores changes it, what does not leaves it."""

from __future__ import annotations

import yaml

from dinoflow.config.pipeline_params import EvaluateParams
from dinoflow.eval.protocol import eval_settings, evaluation_protocol
from tests.project_copy import PROJECT_ROOT


def project_params() -> EvaluateParams:
    return EvaluateParams(
        **yaml.safe_load((PROJECT_ROOT / "conf/base/parameters_evaluate.yml").read_text())["evaluate"]
    )


def test_the_protocol_name_follows_the_scoring_settings_only():
    params = project_params()
    name = evaluation_protocol(params)
    assert len(name) == 12 and evaluation_protocol(project_params()) == name
    assert evaluation_protocol(params.model_copy(update={"knn_k": params.knn_k + 1})) != name
    assert evaluation_protocol(params.model_copy(update={"segmentation_lr": params.segmentation_lr / 2})) != name
    assert evaluation_protocol(params.model_copy(update={"pictures": params.pictures + 1})) == name


def test_settings_carry_the_parameters_and_the_backbone_size():
    params = project_params()
    settings = eval_settings(params, image_size=48)
    assert (settings.k, settings.temperature, settings.image_size) == (params.knn_k, params.knn_temperature, 48)
    probe = eval_settings(params.model_copy(update={"segmentation_epochs": 7, "segmentation_lr": 0.123}), 48)
    assert (probe.segmentation_epochs, probe.segmentation_lr) == (7, 0.123)
