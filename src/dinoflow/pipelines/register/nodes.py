"""Register: log the teacher backbone to MLflow (pt2 and image-in flavours), register a version, alias it
``challenger``."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file

from dinoflow.config import load_config_file
from dinoflow.config.pipeline_params import EvaluateParams, RegisterParams
from dinoflow.eval.features import ImagePreprocessing
from dinoflow.eval.protocol import evaluation_protocol
from dinoflow.models.export import export_onnx, onnx_max_abs_diff
from dinoflow.registry.mlflow_registry import identical_version, link_version, register_backbone, with_retries
from dinoflow.run_summary import registration_line
from dinoflow.tracking import mlflow_run
from dinoflow.tracking.mlflow_run import metric_name
from dinoflow.train.builders import build_backbone_from_config
from dinoflow.train.checkpoint import BACKBONE_NAME, HEAD_NAME

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

log = logging.getLogger(__name__)
LINEAGE_TAGS = ("parent_model_version", "parent_weights_sha256", "distilled_from", "teacher_weights_sha256")


def register_node(
    pretrain_result: dict[str, Any],
    metrics: dict[str, float],
    validation_report: dict[str, Any],
    data_source: dict[str, Any],
    dataset_index: dict[str, Any],
    register: RegisterParams,
    evaluate: EvaluateParams,
) -> dict[str, Any]:
    """Returns ``{"name", "version", "alias", "model_uri", "logged_model_uri"}``, and ``"linked": True``
    when an identical version (same run key and weights) was already registered: ``alias`` then
    points at that version and no duplicate is registered.

    Raises:
        RegistrationFailedError: the registry or its artifact store failed ``register.attempts``
            times; the run folder and the evaluation stay on disk for a later registration.
    """
    cfg = load_config_file(Path(pretrain_result["config"]))
    weights = Path(pretrain_result["output_dir"]) / BACKBONE_NAME
    with weights.open("rb") as f:
        weights_sha256 = hashlib.file_digest(f, "sha256").hexdigest()
    backbone = build_backbone_from_config(cfg, drop_path=False)
    backbone.load_state_dict(load_file(weights), strict=True)  # the export has timm's key names
    size = cfg.crops.global_size
    # Batch 2, not 1: torch.export specialises a size-1 dimension and the model would accept batch 1 only.
    example = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    scores = {k: v for k, v in metrics.items() if metric_name(k).startswith("eval/")}
    onnx_dir = Path(tempfile.mkdtemp(prefix="dinoflow-onnx-"))  # not in the pretrain output: DVC owns that
    onnx_path, onnx_check = onnx_dir / "backbone.onnx", {}

    def register_once() -> dict[str, Any]:
        existing = identical_version(register.model_name, pretrain_result["config_hash"], weights_sha256)
        if existing is not None:
            return _link(existing, register.alias, pretrain_result["config_hash"], weights_sha256)
        if not onnx_path.exists():  # exported once, whatever the number of tries
            export_onnx(backbone, example, onnx_path)
            onnx_check["onnx_max_abs_diff"] = (
                f"{onnx_max_abs_diff(onnx_path, backbone, torch.randn(3, 3, size, size)):.2e}"
            )
            log.info("ONNX export: max |onnxruntime - torch| = %s", onnx_check["onnx_max_abs_diff"])
        tags = {
            **_version_tags(pretrain_result, metrics, validation_report, data_source, dataset_index, evaluate),
            "weights_sha256": weights_sha256,
            "preset": cfg.preset,
            **onnx_check,
        }
        # The heads make the version usable as a distillation teacher (runs before they were exported lack them).
        head = Path(pretrain_result["output_dir"]) / HEAD_NAME
        files = [Path(pretrain_result["config"]), weights, onnx_path, *([head] if head.is_file() else [])]
        # Served images are prepared as evaluation saw this dataset's images (stored, then viewed).
        preprocessing = ImagePreprocessing.of_dataset(dataset_index["settings"], size)
        registration = register_backbone(
            backbone, example.numpy(), register.model_name, register.alias, tags, files, scores, preprocessing
        )
        mlflow_run.add_to_description([registration_line(registration)])
        return registration

    kept = (
        f"The trained run folder {pretrain_result['output_dir']} and the evaluation (data/08_reporting/metrics.json) "
        "are kept: once the registry answers, register them without retraining with "
        "`kedro run --pipelines register,promote`."
    )
    try:
        return with_retries(register_once, register.attempts, register.retry_wait_s, kept)
    finally:
        shutil.rmtree(onnx_dir, ignore_errors=True)


def _link(existing: ModelVersion, alias: str, run_key: str, weights_sha256: str) -> dict[str, Any]:
    registration = link_version(existing, alias)
    log.info(
        "%s v%s was registered from the same run key %s and weights (sha256 %s): linked @%s to it, no new version",
        registration["name"],
        registration["version"],
        run_key,
        weights_sha256[:12],
        alias,
    )
    mlflow_run.set_tags({"register.linked_version": registration["version"]})
    mlflow_run.add_to_description([registration_line(registration) + " (existing version: same run key and weights)"])
    return registration


def _version_tags(
    pretrain_result: dict[str, Any],
    metrics: dict[str, float],
    validation_report: dict[str, Any],
    data_source: dict[str, Any],
    dataset_index: dict[str, Any],
    evaluate: EvaluateParams,
) -> dict[str, str]:
    """The evidence a version carries: lineage, data, validation, collapse and evaluation scores."""
    summary = pretrain_result["summary"]
    return {
        "git_sha": mlflow_run.current_tag("git_sha"),
        "config_hash": pretrain_result["config_hash"],  # the run key; with weights_sha256 it finds identical re-runs
        "data_fingerprint": dataset_index["fingerprint"],
        "label_set": json.dumps(dataset_index["classes"]),  # promote refuses a champion of another label set
        "evaluation_protocol": evaluation_protocol(evaluate),  # with data_fingerprint: promote may reuse metric.*
        "data_dvc_md5": data_source.get("dvc_md5", "untracked"),
        "data_root": data_source.get("root", "unknown"),
        "validation_status": "passed" if validation_report["success"] else "failed",
        "collapsed": str(bool(summary.get("collapse_uniform") or summary.get("collapse_one_prototype"))).lower(),
        "run_id": mlflow_run.active_run_id(),
        # Continual pretraining: the version it was warm-started from (<name>/<version>, or a run folder).
        # Distillation: the teacher's version (distilled_from) and weights.
        **{k: pretrain_result[k] for k in LINEAGE_TAGS if k in pretrain_result},
        **{
            f"metric.{k}": f"{v:.6f}" for k, v in metrics.items() if k.startswith(("knn_top", "linear_top", "seg_miou"))
        },
    }  # fmt: skip
