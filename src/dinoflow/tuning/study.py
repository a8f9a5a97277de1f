"""The study: search space, short proxy pretraining per trial, online k-NN, pruning.

Each trial trains the resolved pretrain config with ``tune.proxy`` and the sampled values
applied, probes the teacher every epoch with a weighted k-NN on fixed train/val subsets, reports
it to Optuna (MedianPruner / Hyperband prune on it) and prunes a collapsed teacher outright,
recording why. Every trial is an MLflow run nested under the tuning run.

- [0]: Caron et al., DINO, 2021, https://arxiv.org/abs/2104.14294 (§5.3, teacher temperature
  and momentum ablations)
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch
from PIL import Image

from dinoflow.config.loading import deep_merge, parse_overrides, validate
from dinoflow.config.pipeline_params import SearchDimension, TuneParams
from dinoflow.data.shards import ShardReader
from dinoflow.eval.features import evaluation_batches, extract_features
from dinoflow.eval.knn import knn_classify, top_k_accuracy
from dinoflow.tracking import mlflow_run
from dinoflow.train.distributed import DistEnv
from dinoflow.train.loop import train

log = logging.getLogger(__name__)


def open_study(params: TuneParams, worker: int = 0) -> optuna.Study:
    """Create the study or load it (a rerun, or another worker, continues the same one)."""
    engine_kwargs = {"connect_args": {"timeout": 60}} if params.storage.startswith("sqlite") else {}
    pruner = {
        "median": optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=params.prune_after_epochs),
        "hyperband": optuna.pruners.HyperbandPruner(min_resource=max(1, params.prune_after_epochs), reduction_factor=3),
        "none": optuna.pruners.NopPruner(),
    }[params.pruner]
    return optuna.create_study(
        study_name=params.study_name,
        storage=optuna.storages.RDBStorage(params.storage, engine_kwargs=engine_kwargs),
        sampler=optuna.samplers.TPESampler(seed=params.seed + worker),  # workers must not draw alike
        pruner=pruner,
        direction="maximize",
        load_if_exists=True,
    )


def suggest(trial: optuna.Trial, space: dict[str, SearchDimension]) -> dict[str, float]:
    values = {}
    for key, dim in space.items():
        if dim.int:
            values[key] = trial.suggest_int(key, int(dim.low), int(dim.high))
        else:
            values[key] = trial.suggest_float(key, dim.low, dim.high, log=dim.log)
    return values


def current_values(config: dict[str, Any], space: dict[str, SearchDimension]) -> dict[str, float]:
    """The config's own values of the searched keys (the baseline trial)."""
    values = {}
    for key in space:
        node = config
        for part in key.split("."):
            node = node[part]
        values[key] = node
    return values


class Subset:
    """``count`` evenly spaced images of a split (the online k-NN's fixed sample)."""

    def __init__(self, reader: ShardReader, count: int) -> None:
        self.reader = reader
        self.indices = np.linspace(0, len(reader) - 1, min(count, len(reader))).round().astype(int)
        self._labels = reader.labels()[torch.from_numpy(self.indices)]

    def __len__(self) -> int:
        return len(self.indices)

    def image(self, i: int) -> torch.Tensor:
        return self.reader.image(int(self.indices[i]))

    def labels(self) -> torch.Tensor:
        return self._labels


class TrialSink:
    """Training metrics of one trial into its MLflow run; keeps the last health flags."""

    def __init__(self, run_id: str) -> None:
        self.run_id, self.last = run_id, {}

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.last = metrics
        mlflow_run.log_metrics_to(self.run_id, metrics, step)

    def close(self) -> None:
        pass


class Objective:
    """One trial: a proxy training run of the base config with the trial's values, scored (and
    pruned) by an online k-NN with the evaluation's ``knn_k`` and ``knn_temperature``, on a GPU
    when there is one."""

    def __init__(self, base: dict[str, Any], params: TuneParams, dataset_dir: Path, parent_run_id: str, *,
                 knn_k: int, knn_temperature: float) -> None:  # fmt: skip
        self.base, self.params, self.dataset_dir, self.parent_run_id = base, params, Path(dataset_dir), parent_run_id
        self.knn_k, self.knn_temperature = knn_k, knn_temperature
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.probe_sets = [
            Subset(ShardReader.from_index(dataset_dir, s), params.probe_images) for s in ("train", "val")
        ]
        self.num_classes = int(self.probe_sets[0].labels().max()) + 1

    def config(self, values: dict[str, float]):
        dotlist = [f"{k}={v}" for k, v in {**self.params.proxy, **values}.items()]
        return validate(deep_merge(self.base, parse_overrides(dotlist)))

    def online_knn(self, backbone: torch.nn.Module, image_size: int) -> float:
        """Weighted k-NN top-1 (``knn_k``, ``knn_temperature``) of the teacher on the fixed val subset."""
        train, val = (extract_features(backbone, evaluation_batches(s, image_size, 256), patch_blocks=0).variant("cls1")
                      for s in self.probe_sets)  # fmt: skip
        scores = knn_classify(train, self.probe_sets[0].labels(), val, self.num_classes, self.knn_k,
                              self.knn_temperature)  # fmt: skip
        return top_k_accuracy(scores, self.probe_sets[1].labels(), 1)

    def __call__(self, trial: optuna.Trial) -> float:
        values = suggest(trial, self.params.space)
        cfg = self.config(values)
        run_id = mlflow_run.start_child_run(
            self.parent_run_id, f"trial-{trial.number}", values, {"optuna.study": self.params.study_name,
                                                                  "optuna.trial": str(trial.number)})  # fmt: skip
        trial.set_user_attr("mlflow_run_id", run_id)
        sink = TrialSink(run_id)
        scores: list[float] = []

        def probe(step: int, backbone: torch.nn.Module) -> None:
            score = self.online_knn(backbone, cfg.crops.global_size)
            scores.append(score)
            mlflow_run.log_metrics_to(run_id, {"online_knn_top1": score}, step)
            epoch = len(scores)  # one probe per (nominal) epoch, also under a time budget
            trial.report(score, epoch)
            if sink.last.get("collapse_uniform") or sink.last.get("collapse_one_prototype"):
                kind = "uniform" if sink.last.get("collapse_uniform") else "one-prototype"
                raise optuna.TrialPruned(f"{kind} collapse at step {step} (teacher entropy "
                                         f"{sink.last.get('teacher_entropy', float('nan')):.3f} of ln K)")  # fmt: skip
            if trial.should_prune():
                raise optuna.TrialPruned(f"{self.params.pruner} pruner at epoch {epoch}: online k-NN {score:.3f}")

        workdir = Path(tempfile.mkdtemp(prefix=f"dinoflow-trial-{trial.number}-"))
        try:
            train(cfg, self.dataset_dir, workdir, sink, DistEnv(), self.device, probe=probe,
                  probes=cfg.optim.epochs)  # fmt: skip
        except optuna.TrialPruned as pruned:
            trial.set_user_attr("pruned_reason", str(pruned))
            mlflow_run.finish_run(run_id, "KILLED", {"optuna.state": "pruned", "optuna.pruned_reason": pruned})
            log.info("trial %d pruned: %s", trial.number, pruned)
            raise
        except Exception as error:
            mlflow_run.finish_run(run_id, "FAILED", {"optuna.state": "failed", "error": repr(error)[:500]})
            raise
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        mlflow_run.finish_run(run_id, "FINISHED", {"optuna.state": "complete"})
        log.info("trial %d: online k-NN %.3f with %s", trial.number, scores[-1], values)
        return scores[-1]


def prepare_study(base: dict[str, Any], params: TuneParams) -> optuna.Study:
    """Create the study (and its database tables) once, before any worker starts, and queue the
    config's own values as the first trial: the baseline every other trial is compared with."""
    study = open_study(params)
    study.enqueue_trial(current_values(base, params.space), skip_if_exists=True)
    return study


def run_worker(base: dict[str, Any], params: TuneParams, dataset_dir: Path, parent_run_id: str, worker: int,
               trials: int, knn_k: int, knn_temperature: float) -> None:  # fmt: skip
    """Run ``trials`` trials of the shared study (``prepare_study`` has created it)."""
    study = open_study(params, worker)
    objective = Objective(base, params, dataset_dir, parent_run_id, knn_k=knn_k, knn_temperature=knn_temperature)
    study.optimize(objective, n_trials=trials, timeout=params.timeout_s, gc_after_trial=True)


def summarize(study: optuna.Study, space: dict[str, SearchDimension]) -> dict[str, Any]:
    """Counts, the best trial and the baseline (the first trial: the config's own values)."""
    trials = study.get_trials(deepcopy=False)
    states = [t.state for t in trials]
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    baseline = trials[0] if trials else None
    return {
        "study": study.study_name,
        "trials": len(trials),
        "complete": len(complete),
        "pruned": states.count(optuna.trial.TrialState.PRUNED),
        "failed": states.count(optuna.trial.TrialState.FAIL),
        "pruned_reasons": {t.number: t.user_attrs.get("pruned_reason", "") for t in trials if t.state.name == "PRUNED"},
        "best_trial": study.best_trial.number if complete else None,
        "best_value": study.best_value if complete else None,
        "best_params": study.best_params if complete else {},
        "baseline_value": baseline.value if baseline is not None and baseline.state.name == "COMPLETE" else None,
        "baseline_params": baseline.params if baseline is not None else {},
        "space": {k: v.model_dump() for k, v in space.items()},
    }


def study_plots(study: optuna.Study) -> dict[str, Image.Image]:
    """Optimisation history, parameter importances, slices and contour, by name (those the study
    has enough completed trials for)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as plots

    from dinoflow.eval.pictures import figure_image

    drawn = {}
    for name, draw in (("optimization_history", plots.plot_optimization_history),
                       ("param_importances", plots.plot_param_importances),
                       ("slice", plots.plot_slice), ("contour", plots.plot_contour)):  # fmt: skip
        try:
            with warnings.catch_warnings():  # the matplotlib backend is "experimental" since Optuna 2.2
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                draw(study)
        except (ValueError, RuntimeError) as error:  # e.g. importances need 2+ completed trials
            log.info("no %s plot: %s", name, error)
            continue
        plt.gcf().set_size_inches(10, 6)
        drawn[name] = figure_image(plt.gcf(), dpi=100, bbox_inches="tight")
        plt.close("all")
    return drawn
