"""Tune: run the Optuna study in worker processes, then write the best values where ``pretrain``
picks them up (``pretrain_tuned.use=true``) and the study's plots where people look. The study code
(optuna, torch) is imported when the node runs: ``kedro run`` imports every node."""

from __future__ import annotations

import logging
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from dinoflow.config import resolve_config, to_dict
from dinoflow.config.pipeline_params import EvaluateParams, TuneParams
from dinoflow.contracts import DatasetIndex
from dinoflow.launch.local import run_process
from dinoflow.tracking import mlflow_run

log = logging.getLogger(__name__)


def worker_commands(
    base: Path, params: Path, dataset: Path, tune: TuneParams, evaluate: EvaluateParams
) -> list[list[str]]:
    """One command per worker, the trials split so that they add up to ``tune.n_trials``; trials are
    scored with the evaluation's k-NN settings."""
    share, extra = divmod(tune.n_trials, tune.workers)
    return [
        [
            sys.executable,
            "-m",
            "dinoflow.tuning",
            "--base",
            str(base),
            "--params",
            str(params),
            "--dataset",
            str(dataset),
            "--worker",
            str(w),
            "--trials",
            str(share + (w < extra)),
            "--knn-k",
            str(evaluate.knn_k),
            "--knn-temperature",
            str(evaluate.knn_temperature),
        ]  # fmt: skip
        for w in range(tune.workers)
        if share + (w < extra)
    ]


def tune_node(
    dataset_index: DatasetIndex,
    pretrain: dict[str, Any],
    presets: dict[str, Any],
    tune: TuneParams,
    evaluate: EvaluateParams,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Returns the study summary (``data/08_reporting/tuning_summary.json``) and the best trial's
    values for pretraining (the catalog's ``tuned_pretrain``; empty while no trial has completed)."""
    from dinoflow.tuning.study import open_study, prepare_study, save_plots, summarize

    base = to_dict(resolve_config(pretrain, presets))
    if base["init_from"] is not None:  # trials are short runs from scratch; a warm start is not staged for each
        log.info("tuning trials start cold: pretrain.init_from=%s applies to `kedro run` only", base["init_from"])
        base["init_from"] = None
    mlflow_run.set_tags({"optuna.study": tune.study_name, "optuna.storage": mlflow_run.redact(tune.storage)})
    prepare_study(base, tune)  # tables and the baseline trial exist before the workers race for them
    _run_workers(base, Path(dataset_index.dir), tune, evaluate)
    study = open_study(tune)
    summary = summarize(study, tune.space)
    for path in save_plots(study, Path(tune.plots_dir)):
        mlflow_run.log_artifact(path, "tuning")
    mlflow_run.log_metrics({k: float(summary[k]) for k in ("trials", "complete", "pruned", "failed")})
    if summary["best_value"] is None:
        return summary, {}
    return summary, _best(summary, base["preset"])


def _run_workers(base: dict[str, Any], dataset_dir: Path, tune: TuneParams, evaluate: EvaluateParams) -> None:
    """``tune.workers`` worker processes share the study; each is handed the base config and the parameters as files."""
    with tempfile.TemporaryDirectory() as tmp:
        base_path, params_path = Path(tmp) / "base.yaml", Path(tmp) / "tune.json"
        base_path.write_text(yaml.safe_dump(base, sort_keys=False))
        params_path.write_text(tune.model_dump_json())
        commands = worker_commands(base_path, params_path, dataset_dir, tune, evaluate)
        with ThreadPoolExecutor(len(commands)) as pool:
            env = mlflow_run.child_process_env()
            list(pool.map(lambda c: run_process(c, env=env, timeout_s=tune.timeout_s + 600), commands))


def _best(summary: dict[str, Any], preset: str) -> dict[str, Any]:
    """Log the best trial; its values, as ``pretrain_tuned.use=true`` applies them."""
    mlflow_run.log_metrics({"best_online_knn_top1": summary["best_value"]})
    mlflow_run.log_params(summary["best_params"], prefix="best.")
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
