"""The study's worker processes: ``tune.workers`` processes of ``python -m dinoflow.tuning`` share
one Optuna study (its RDB storage) and log their trials as runs nested under the pipeline's run."""

from __future__ import annotations

import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from dinoflow.config.pipeline_params import EvaluateParams, TuneParams
from dinoflow.launch.local import run_process
from dinoflow.tracking import mlflow_run


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


def run_workers(base: dict[str, Any], dataset_dir: Path, tune: TuneParams, evaluate: EvaluateParams) -> None:
    """``tune.workers`` worker processes share the study; each is handed the base config and the parameters as files."""
    with tempfile.TemporaryDirectory() as tmp:
        base_path, params_path = Path(tmp) / "base.yaml", Path(tmp) / "tune.json"
        base_path.write_text(yaml.safe_dump(base, sort_keys=False))
        params_path.write_text(tune.model_dump_json())
        commands = worker_commands(base_path, params_path, dataset_dir, tune, evaluate)
        with ThreadPoolExecutor(len(commands)) as pool:
            env = mlflow_run.child_process_env()
            list(pool.map(lambda c: run_process(c, env=env, timeout_s=tune.timeout_s + 600), commands))
