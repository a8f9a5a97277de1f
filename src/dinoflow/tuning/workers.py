"""The study's worker processes: ``tune.workers`` processes of ``python -m dinoflow.tuning`` share
one Optuna study (its RDB storage) and log their trials as runs nested under the pipeline's run."""

from __future__ import annotations

import sys
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml
from optuna.trial import TrialState

from dinoflow.config.pipeline_params import EvaluateParams, TuneParams
from dinoflow.launch.local import run_process
from dinoflow.tracking import mlflow_run
from dinoflow.tuning.study import open_study


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
        env = mlflow_run.child_process_env()
        with ThreadPoolExecutor(len(commands)) as pool:
            started = [pool.submit(run_process, commands[0], env=env, timeout_s=tune.timeout_s + 600)]
            if len(commands) > 1:
                _wait_for_the_queue_to_empty(tune, started[0])
            started += [pool.submit(run_process, c, env=env, timeout_s=tune.timeout_s + 600) for c in commands[1:]]
            for worker in started:
                worker.result()


def _wait_for_the_queue_to_empty(tune: TuneParams, first: Future, poll_s: float = 0.2) -> None:
    """Until the first worker has taken the queued baseline trial (or stopped). Optuna hands a queued
    trial to whichever worker asks; on SQLite (no row locks) two workers asking at once can both
    take it, and the second then fails with "Cannot tell a COMPLETE trial" (optuna/optuna#4621)."""
    study = open_study(tune)
    while not first.done() and study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        time.sleep(poll_s)
