"""Register: the run's teacher backbone becomes a registered version aliased ``challenger``
(``registry.registration``), carrying its evidence as tags."""

from __future__ import annotations

from functools import partial
from typing import Any

from dinoflow.config.pipeline_params import EvaluateParams, RegisterParams
from dinoflow.contracts import DatasetIndex, PretrainResult
from dinoflow.launch.remote import require_local_run
from dinoflow.registry.registration import register_run, version_tags


def register_node(
    pretrain_result: PretrainResult,
    metrics: dict[str, float],
    validation_report: dict[str, Any],
    data_source: dict[str, Any],
    dataset_index: DatasetIndex,
    register: RegisterParams,
    evaluate: EvaluateParams,
) -> dict[str, Any]:
    """Returns ``{"name", "version", "alias", "model_uri", "logged_model_uri"}``, and ``"linked": True``
    when an identical version (same run key and weights) was already registered: ``alias`` then
    points at that version and no duplicate is registered.

    Raises:
        RegistrationFailedError: the registry or its artifact store failed ``register.attempts``
            times; the run folder and the evaluation stay on disk for a later registration.
    """
    require_local_run(pretrain_result, "register")
    evidence = partial(version_tags, pretrain_result, metrics, validation_report, data_source, dataset_index, evaluate)
    return register_run(pretrain_result, metrics, dataset_index, register, evidence)
