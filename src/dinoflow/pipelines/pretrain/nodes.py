"""Pretrain: resolve the config into a planned run folder, then launch the training process (or
the Kubernetes Job), wait, and return where it wrote (``launch.run_folder``, ``launch.training``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from dinoflow.config import resolve_config
from dinoflow.config.pipeline_params import LauncherParams, TunedParams
from dinoflow.contracts import DatasetIndex, PretrainPlan, PretrainResult
from dinoflow.launch.run_folder import plan_run
from dinoflow.launch.training import train_run, training_curve

log = logging.getLogger(__name__)


def tuned_overrides(tuned: TunedParams, record: dict[str, Any] | None) -> list[str]:
    """``key=value`` overrides from the last tuning study's ``record`` (the catalog's
    ``tuned_pretrain``; None before any study) when ``pretrain_tuned.use`` is on."""
    if not tuned.use:
        return []
    if not record:
        raise FileNotFoundError(
            "pretrain_tuned.use is true but no tuning study has a complete trial yet (the catalog's tuned_pretrain, "
            "data/07_model_output/tuned_pretrain.yml, is missing or empty): run `make tune` first"
        )
    log.info("applying tuned values of study %s trial %s: %s", record["study"], record["trial"], record["overrides"])
    return [f"{key}={value}" for key, value in record["overrides"].items()]


def plan_pretrain_node(
    dataset_index: DatasetIndex,
    pretrain: dict[str, Any],
    presets: dict[str, Any],
    launcher: LauncherParams,
    tuned: TunedParams | None = None,
    tuned_values: dict[str, Any] | None = None,
) -> PretrainPlan:
    """The resolved config (the tuned values applied when ``pretrain_tuned.use``) in its run folder,
    named by its key: same config, data, training code and warm-start weights, same folder."""
    overrides = tuned_overrides(tuned, tuned_values) if tuned is not None else []
    cfg = resolve_config(pretrain, presets, overrides)
    applied = (
        {"tuned.study": str(tuned_values["study"]), "tuned.trial": str(tuned_values["trial"])} if overrides else {}
    )
    return plan_run(cfg, dataset_index.fingerprint, Path(launcher.output_root), applied)


def pretrain_node(
    plan: PretrainPlan, dataset_index: DatasetIndex, launcher: LauncherParams
) -> tuple[PretrainResult, pd.DataFrame]:
    """Train (or resume, or reuse a finished run of the same key) and return the ``PretrainResult``
    (folder, checkpoint, config, run key, summary, MLflow run, lineage) and the training curve.
    With ``pretrain_launcher.kind: kubernetes`` and the checkpoints claim not mounted at
    ``output_root`` here (or after a dry run), the result names the checkpoint's place on the claim
    and the Job instead, and the curve is empty."""
    result = train_run(plan, launcher, Path(dataset_index.dir))
    if not result.is_local:
        return result, pd.DataFrame()
    return result, training_curve(Path(plan.output_dir) / "metrics.jsonl")
