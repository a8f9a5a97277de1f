"""What each pipeline output puts on the pipeline's MLflow run page: tags, params, metrics,
artifacts, pictures, the dataset inputs and the lines of the run's description.

The nodes return plain values and know nothing of MLflow; the run hook (``hooks.RunPageHook``)
hands every node's inputs and outputs to ``log_node_outputs`` after the node ran, and each output
with an entry in ``LOGGERS`` is logged from its value (and, where it needs them, the node's inputs).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from dinoflow import run_summary
from dinoflow.tracking import mlflow_run

# A node's inputs and outputs by catalog name (``params:evaluate`` included).
NodeIO = Mapping[str, Any]


def _data_source(source: Mapping[str, Any], io: NodeIO) -> None:
    mlflow_run.set_tags({f"data.{k}": v for k, v in source.items()})


def _dataset_index(index, io: NodeIO) -> None:
    mlflow_run.set_tags({"data.fingerprint": index.fingerprint})


def _validation_report(report: Mapping[str, Any], io: NodeIO) -> None:
    mlflow_run.log_dict(report, "validation/gx_result.json")
    mlflow_run.log_artifacts(Path(report["data_docs"]).parent, "validation/data_docs")
    mlflow_run.log_metrics({f"data_{k}": v for k, v in report["statistics"].items()})
    mlflow_run.set_tags({"validation_status": "passed" if report["success"] else "failed"})


def _curation_report(report: Mapping[str, Any], io: NodeIO) -> None:
    mlflow_run.log_metrics({f"curation.removed.{why}": n for why, n in report.get("removed", {}).items()})


def _embed_report(report: Mapping[str, Any], io: NodeIO) -> None:
    mlflow_run.set_tags({"embed.model_version": report["model_version"], "embed.index": report["index"]})
    mlflow_run.log_metrics({f"embed.{k}": report[k] for k in ("count", "computed", "reused", "embed_seconds")})


def _pretrain_plan(plan, io: NodeIO) -> None:
    """Before training starts: the resolved config, the run key, lineage and the training data."""
    mlflow_run.log_params(plan.config, prefix="pretrain.")
    mlflow_run.log_artifact(Path(plan.config_path), "config")
    mlflow_run.set_tags({"config_hash": plan.key, "preset": plan.preset, **plan.lineage, **plan.tuned})
    mlflow_run.name_run(plan.preset, plan.key)
    index = io["dataset_index"]
    mlflow_run.log_dataset("training", "train", index.fingerprint, index.dir)


def _pretrain_result(result, io: NodeIO) -> None:
    if result.reused:  # no training process logged into this run: its curve comes from the run folder
        mlflow_run.set_tags({"pretrain.reused": "true"})
        mlflow_run.log_metric_history(io["training_curve"].to_dict("records"))
    if result.summary is not None:
        line = run_summary.pretrain_line(io["pretrain_plan"].preset, mlflow_run.data_name(), result.config_hash,
                                         result.summary.model_dump())  # fmt: skip
        mlflow_run.add_to_description([line])


def _metrics(metrics: Mapping[str, float], io: NodeIO) -> None:
    evaluate, index = io["params:evaluate"], io["dataset_index"]
    mlflow_run.log_dataset("evaluation", "val", index.fingerprint, index.dir)
    mlflow_run.log_metrics(metrics)
    mlflow_run.add_to_description(run_summary.evaluation_lines(metrics, evaluate.knn_k, evaluate.knn_temperature))


def _evaluation_record(record: Mapping[str, Any], io: NodeIO) -> None:
    mlflow_run.set_tags(record.get("tags", {}))


def _images(pictures: Mapping[str, Any], io: NodeIO) -> None:
    """Evaluation's pictures, inline on the run page beside the charts."""
    for name, picture in pictures.items():
        mlflow_run.log_image(picture, name)


def _pictures_under(folder: str) -> Callable[[Mapping[str, Any], NodeIO], None]:
    """Pictures as files of the run's ``folder`` (curation, tuning: looked at, not compared over steps)."""

    def log(pictures: Mapping[str, Any], io: NodeIO) -> None:
        for name, picture in pictures.items():
            mlflow_run.log_picture(picture, f"{folder}/{name}.png")

    return log


def _registration(registration: Mapping[str, Any], io: NodeIO) -> None:
    line = run_summary.registration_line(registration)
    if registration.get("linked"):
        mlflow_run.set_tags({"register.linked_version": registration["version"]})
        line += " (existing version: same run key and weights)"
    mlflow_run.add_to_description([line])


def _promotion(record: Mapping[str, Any], io: NodeIO) -> None:
    if record["decision"] != "unchanged":
        scores = record["scores"]
        mlflow_run.log_metrics({f"promotion.{role}.{k}": v for role, s in scores.items() for k, v in s.items()})
        mlflow_run.set_tags({"promotion.decision": record["decision"]})
    mlflow_run.add_to_description(run_summary.promotion_lines(record))


def _tuning_summary(summary: Mapping[str, Any], io: NodeIO) -> None:
    tune = io["params:tune"]
    mlflow_run.set_tags({"optuna.study": tune.study_name, "optuna.storage": mlflow_run.redact(tune.storage)})
    mlflow_run.log_metrics({k: float(summary[k]) for k in ("trials", "complete", "pruned", "failed")})
    if summary["best_value"] is not None:
        mlflow_run.log_metrics({"best_online_knn_top1": summary["best_value"]})
        mlflow_run.log_params(summary["best_params"], prefix="best.")


LOGGERS: dict[str, Callable[[Any, NodeIO], None]] = {
    "data_source": _data_source,
    "embed_source": _data_source,
    "dataset_index": _dataset_index,
    "validation_report": _validation_report,
    "embed_validation_report": _validation_report,
    "curation_report": _curation_report,
    "embed_report": _embed_report,
    "pretrain_plan": _pretrain_plan,
    "pretrain_result": _pretrain_result,
    "metrics": _metrics,
    "evaluation_record": _evaluation_record,
    "evaluation_pictures": _images,
    "curation_pictures": _pictures_under("curation"),
    "tuning_plots": _pictures_under("tuning"),
    "registration": _registration,
    "promotion": _promotion,
    "tuning_summary": _tuning_summary,
}


def log_node_outputs(inputs: NodeIO, outputs: NodeIO) -> list[str]:
    """Log each output of one node that has a logger; returns the names logged (in order)."""
    io = {**inputs, **outputs}
    logged = [name for name in outputs if name in LOGGERS]
    for name in logged:
        LOGGERS[name](outputs[name], io)
    return logged
