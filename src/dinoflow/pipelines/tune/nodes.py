"""Tune: run the Optuna study in worker processes, then write the best values where ``pretrain``
picks them up (``pretrain_tuned.use=true``) and the study's plots where people look. The study code
(optuna, torch) is imported when the node runs: ``kedro run`` imports every node."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PIL.Image import Image  # at module level: Kedro validates params: only when the annotations resolve

from dinoflow.config import resolve_config, to_dict
from dinoflow.config.pipeline_params import EvaluateParams, TuneParams
from dinoflow.contracts import DatasetIndex

log = logging.getLogger(__name__)


def tune_node(
    dataset_index: DatasetIndex,
    pretrain: dict[str, Any],
    presets: dict[str, Any],
    tune: TuneParams,
    evaluate: EvaluateParams,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Image]]:
    """Returns the study summary (``data/08_reporting/tuning_summary.json``), the best trial's
    values for pretraining (the catalog's ``tuned_pretrain``; empty while no trial has completed)
    and the study's plots by name (the catalog's ``tuning_plots``)."""
    from dinoflow.tuning.study import open_study, prepare_study, study_plots, summarize
    from dinoflow.tuning.workers import run_workers

    base = to_dict(resolve_config(pretrain, presets))
    if base["init_from"] is not None:  # trials are short runs from scratch; a warm start is not staged for each
        log.info("tuning trials start cold: pretrain.init_from=%s applies to `kedro run` only", base["init_from"])
        base["init_from"] = None
    prepare_study(base, tune)  # tables and the baseline trial exist before the workers race for them
    run_workers(base, Path(dataset_index.dir), tune, evaluate)
    study = open_study(tune)
    summary = summarize(study, tune.space)
    tuned = _best(summary, base["preset"]) if summary["best_value"] is not None else {}
    return summary, tuned, study_plots(study)


def _best(summary: dict[str, Any], preset: str) -> dict[str, Any]:
    """The best trial's values, as ``pretrain_tuned.use=true`` applies them."""
    log.info("best trial %d: online k-NN %.3f (baseline %s); train with it: --params pretrain_tuned.use=true",
             summary["best_trial"], summary["best_value"], summary["baseline_value"])  # fmt: skip
    return {
        "study": summary["study"],
        "trial": summary["best_trial"],
        "online_knn_top1": summary["best_value"],
        "baseline_online_knn_top1": summary["baseline_value"],
        "tuned_on_preset": preset,
        "overrides": summary["best_params"],
    }
