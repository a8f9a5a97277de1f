"""Evaluate: k-NN of the teacher backbone against random-init and raw-pixel baselines.

The evaluation code (torch, timm, matplotlib) is imported when a node runs: ``kedro run`` imports
every node to build its graph."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd
from PIL.Image import Image  # at module level: Kedro validates params: only when the annotations resolve

from dinoflow.config.pipeline_params import EvaluateParams
from dinoflow.contracts import DatasetIndex, PretrainResult
from dinoflow.eval.protocol import eval_set, eval_settings
from dinoflow.launch.remote import require_local_run
from dinoflow.run_summary import evaluation_lines

log = logging.getLogger(__name__)


def evaluate_node(
    dataset_index: DatasetIndex, pretrain_result: PretrainResult, training_curve: pd.DataFrame, evaluate: EvaluateParams
) -> tuple[dict[str, float], dict[str, Any], dict[str, Image]]:
    """Returns the flat metrics (``data/08_reporting/metrics.json``), the evaluation's record
    (``evaluation.json``: ``tags``, the best linear heads) and its pictures by name (the catalog's
    ``evaluation_pictures``); the run page logs all three."""
    from dinoflow.eval.suite import evaluate_backbone
    from dinoflow.train.builders import load_backbone

    require_local_run(pretrain_result, "evaluate")
    # The exported teacher backbone: the very file register uploads, so the version carries the scored weights.
    trained, cfg = load_backbone(Path(pretrain_result.output_dir))
    random_init, _ = load_backbone(Path(pretrain_result.output_dir), "random_init")
    settings = eval_settings(evaluate, cfg.crops.global_size)
    metrics, details = evaluate_backbone(trained, random_init, eval_set(dataset_index, settings), settings)
    for line in evaluation_lines(metrics, evaluate.knn_k, evaluate.knn_temperature):
        log.info(line)
    pictures = _pictures(trained, dataset_index, training_curve, cfg.crops.global_size, evaluate)
    return metrics, {"tags": details}, pictures


def _pictures(backbone, dataset_index: DatasetIndex, training_curve: pd.DataFrame, image_size: int,
              evaluate: EvaluateParams) -> dict[str, Image]:  # fmt: skip
    """Attention maps and patch-token PCA of the first ``evaluate.pictures`` val images, and the
    training curves (none for evaluate.pictures: 0)."""
    from dinoflow.data.shards import ShardReader
    from dinoflow.eval.features import evaluation_batches, extract_features
    from dinoflow.eval.pictures import plot_training_curve, render_pictures

    if not evaluate.pictures:
        return {}
    val = ShardReader.from_index(Path(dataset_index.dir), "val")
    images = next(evaluation_batches(val, image_size, evaluate.pictures))
    tokens = extract_features(backbone, [images]).last_patch_tokens
    pictures = render_pictures(backbone, images, tokens)
    records = [{k: v for k, v in row.items() if pd.notna(v)} for row in training_curve.to_dict("records")]
    if records:  # a run trained before its metrics log existed has none
        pictures["training_curve"] = plot_training_curve(records)
    return pictures
