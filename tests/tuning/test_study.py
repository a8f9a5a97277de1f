"""Optuna tuning for real: RDB storage (sqlite and PostgreSQL), worker processes, pruning,
nested MLflow runs, and the best values landing where `pretrain` reads them."""

from __future__ import annotations

import contextlib
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from dinoflow.config import resolve_config, to_dict
from dinoflow.config.pipeline_params import EvaluateParams, TunedParams, TuneParams
from dinoflow.contracts import DatasetIndex
from dinoflow.pipelines.pretrain.nodes import tuned_overrides
from dinoflow.pipelines.tune.nodes import tune_node
from dinoflow.tracking import mlflow_run
from dinoflow.tuning.study import Objective, open_study
from tests.servers import postgres_cluster
from tests.train.test_collapse import TOY

pytestmark = pytest.mark.slow

SPACE = {
    "loss.warmup_teacher_temp": {"low": 0.02, "high": 0.1},
    "loss.teacher_temp": {"low": 0.02, "high": 0.1},
    "optim.momentum_teacher": {"low": 0.9, "high": 0.9995},
}


def tune_params(tmp_path: Path, storage: str, n_trials: int, workers: int) -> TuneParams:
    return TuneParams(
        study_name="test-study", storage=storage, n_trials=n_trials, workers=workers, timeout_s=600, seed=0,
        pruner="median", probe_images=24, proxy={"optim.epochs": 2, "optim.warmup_epochs": 0, "run.log_every": 1},
        space=SPACE,
    )  # fmt: skip


def run_tune(tiny_config, tiny_shards, tmp_path, params: TuneParams) -> tuple[dict, dict, dict]:
    evaluate = EvaluateParams(knn_k=20, knn_ks=[20], knn_temperature=0.07, linear_epochs=1, segmentation_epochs=1,
                              segmentation_lr=0.01, pictures=0, batch_size=64)  # fmt: skip
    return tune_node(DatasetIndex.model_validate(tiny_shards), to_dict(tiny_config), {}, params, evaluate)


def test_a_small_study_completes_and_feeds_pretrain(tiny_config, tiny_shards, tmp_path, mlflow_tmp):
    summary, tuned, plots = run_tune(
        tiny_config, tiny_shards, tmp_path, tune_params(tmp_path, f"sqlite:///{tmp_path}/o.db", 4, 1)
    )
    assert summary["trials"] == 4 and summary["complete"] + summary["pruned"] == 4 and summary["failed"] == 0
    assert summary["baseline_params"]["loss.teacher_temp"] == tiny_config.loss.teacher_temp  # trial 0 = defaults
    assert set(tuned["overrides"]) == set(SPACE) and tuned["online_knn_top1"] == summary["best_value"]
    overrides = tuned_overrides(TunedParams(use=True), tuned)
    with pytest.raises(FileNotFoundError, match=r"pretrain_tuned.use is true but no tuning study .*`make tune`"):
        tuned_overrides(TunedParams(use=True), None)  # the catalog's tuned_pretrain before any study
    assert sorted(overrides) == sorted(f"{k}={v}" for k, v in summary["best_params"].items())
    assert {"optimization_history", "slice"} <= set(plots) and plots["optimization_history"].size > (100, 100)
    children = MlflowClient().search_runs(
        [MlflowClient().get_run(mlflow_tmp).info.experiment_id], f"tags.mlflow.parentRunId = '{mlflow_tmp}'"
    )
    assert len(children) == 4 and all("eval/online_knn_top1" in run.data.metrics for run in children)
    assert {run.data.tags["optuna.state"] for run in children} <= {"complete", "pruned"}


def test_a_collapsing_teacher_temperature_is_pruned_and_says_why(tiny_shards, tmp_path, mlflow_tmp):
    params = tune_params(tmp_path, f"sqlite:///{tmp_path}/o.db", 1, 1).model_copy(update={"proxy": {}})
    study = open_study(params)
    # Teacher as warm as the student: no sharpening, the outputs go uniform (DINO §5.3), on the
    # miniature of the collapse tests (fast lr, fast teacher).
    study.enqueue_trial({"loss.warmup_teacher_temp": 0.1, "loss.teacher_temp": 0.1, "optim.momentum_teacher": 0.9})
    base = to_dict(resolve_config(TOY, {}))
    study.optimize(
        Objective(base, params, Path(tiny_shards["dir"]), mlflow_tmp, knn_k=20, knn_temperature=0.07), n_trials=1
    )
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert trial.user_attrs["pruned_reason"].startswith("uniform collapse at step")
    run = MlflowClient().get_run(trial.user_attrs["mlflow_run_id"])
    assert run.info.status == "KILLED" and run.data.tags["optuna.pruned_reason"] == trial.user_attrs["pruned_reason"]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_worker_processes_share_one_study(backend, tiny_config, tiny_shards, tmp_path, mlflow_tmp):
    database = contextlib.nullcontext(f"sqlite:///{tmp_path}/o.db") if backend == "sqlite" else postgres_cluster()
    with database as storage:
        summary, _, _ = run_tune(tiny_config, tiny_shards, tmp_path, tune_params(tmp_path, storage, 4, 2))
        trials = open_study(tune_params(tmp_path, storage, 4, 2)).trials
    assert summary["trials"] == 4 and sorted(t.number for t in trials) == [0, 1, 2, 3]
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 4  # distinct draws, not one seed twice
    assert mlflow_run.active_run_id() == mlflow_tmp
