"""Evaluate: k-NN of the teacher backbone against random-init and raw-pixel baselines."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from dinoflow.config.pipeline_params import EvaluateParams
from dinoflow.data.shards import ShardReader
from dinoflow.eval.features import evaluation_batches, extract_features
from dinoflow.eval.pictures import plot_training_curve, render_pictures
from dinoflow.eval.protocol import eval_set, eval_settings
from dinoflow.eval.suite import evaluate_backbone
from dinoflow.launch.remote import require_local_run
from dinoflow.run_summary import evaluation_lines
from dinoflow.tracking import mlflow_run
from dinoflow.train.builders import backbone_from_files

log = logging.getLogger(__name__)


def evaluate_node(
    dataset_index: dict[str, Any], pretrain_result: dict[str, Any], evaluate: EvaluateParams
) -> dict[str, float]:
    """Returns the flat metrics dict written to ``data/08_reporting/metrics.json``."""
    require_local_run(pretrain_result, "evaluate")
    # The exported teacher backbone: the very file register uploads, so the version carries the scored weights.
    trained, cfg = backbone_from_files(Path(pretrain_result["output_dir"]))
    random_init, _ = backbone_from_files(Path(pretrain_result["output_dir"]), weights=False)
    settings = eval_settings(evaluate, cfg.crops.global_size)
    mlflow_run.log_dataset("evaluation", "val", dataset_index["fingerprint"], dataset_index["dir"])
    metrics, details = evaluate_backbone(trained, random_init, eval_set(dataset_index, settings), settings)
    log.info(
        "k-NN top-1: trained %.3f, random init %.3f, raw pixels %.3f; linear top-1: trained %.3f, random init %.3f;"
        " segmentation mIoU: trained %.3f, random init %.3f, majority class %.3f",
        metrics["knn_top1"], metrics["knn_top1_random_init"], metrics["knn_top1_raw_pixels"],
        metrics["linear_top1"], metrics["linear_top1_random_init"],
        metrics.get("seg_miou", float("nan")), metrics.get("seg_miou_random_init", float("nan")),
        metrics.get("seg_miou_majority", float("nan")),
    )  # fmt: skip
    mlflow_run.set_tags(details)
    mlflow_run.log_metrics(metrics)
    mlflow_run.add_to_description(evaluation_lines(metrics, evaluate.knn_k, evaluate.knn_temperature))
    if evaluate.pictures:
        val = ShardReader.from_index(Path(dataset_index["dir"]), "val")
        images = next(evaluation_batches(val, cfg.crops.global_size, evaluate.pictures))
        tokens = extract_features(trained, [images]).patch_tokens
        for path in render_pictures(trained, images, tokens, Path(evaluate.pictures_dir)):
            mlflow_run.log_image(path)
            log.info("wrote %s", path)
    return metrics


def training_curve_picture_node(training_curve: pd.DataFrame, evaluate: EvaluateParams) -> None:
    """``training_curve.png`` beside the other pictures, and on the run page (no curve: a run
    that trained on a cluster without its checkpoints mounted here)."""
    if not evaluate.pictures or training_curve.empty:
        return
    records = [{k: v for k, v in row.items() if pd.notna(v)} for row in training_curve.to_dict("records")]
    path = plot_training_curve(records, Path(evaluate.pictures_dir) / "training_curve.png")
    mlflow_run.log_image(path)
    log.info("wrote %s", path)
