"""Register a finished run's teacher backbone: the version's files, its evidence as tags, the
``challenger`` alias, and no duplicate version for an identical re-run (same run key and weights).

Torch and the model code are imported when a run is registered (``kedro run`` imports every node)."""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dinoflow.config.pipeline_params import EvaluateParams, RegisterParams
from dinoflow.contracts import DatasetIndex, PretrainResult
from dinoflow.eval.protocol import evaluation_protocol
from dinoflow.registry.mlflow_registry import identical_version, link_version, register_backbone, with_retries
from dinoflow.tracking import mlflow_run
from dinoflow.tracking.mlflow_run import metric_name
from dinoflow.train.run_files import BACKBONE_NAME, HEAD_NAME, RANDOM_INIT_NAME

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

log = logging.getLogger(__name__)


def register_run(
    pretrain_result: PretrainResult,
    metrics: dict[str, float],
    dataset_index: DatasetIndex,
    register: RegisterParams,
    evidence: Callable[[], dict[str, str]],
) -> dict[str, Any]:
    """Register the run's teacher backbone (the file evaluate scored) with the tags ``evidence()``
    returns (``version_tags``: it reads the run's tags, so it is called inside the retried part,
    as every registry call is) and the scores; or, for an identical version, point the alias at it.

    Returns ``{"name", "version", "alias", "model_uri", "logged_model_uri"}`` (``"linked": True``
    for an existing version). Raises ``RegistrationFailedError`` after ``register.attempts`` tries.
    """
    from dinoflow.eval.features import ImagePreprocessing
    from dinoflow.models.export import OnnxExport
    from dinoflow.train.builders import load_backbone

    run_dir = Path(pretrain_result.output_dir)
    backbone, cfg = load_backbone(run_dir)  # what evaluate scored: the same file, the same loader
    with (run_dir / BACKBONE_NAME).open("rb") as f:
        weights_sha256 = hashlib.file_digest(f, "sha256").hexdigest()
    scores = {k: v for k, v in metrics.items() if metric_name(k).startswith("eval/")}
    # Served images are prepared as evaluation saw this dataset's images (stored, then viewed).
    preprocessing = ImagePreprocessing.of_dataset(dataset_index.settings, cfg.crops.global_size)
    with tempfile.TemporaryDirectory(prefix="dinoflow-onnx-") as onnx_dir:  # not in the run folder: DVC owns it
        onnx = OnnxExport(backbone, cfg.crops.global_size, Path(onnx_dir) / "backbone.onnx")

        def register_once() -> dict[str, Any]:
            existing = identical_version(register.model_name, pretrain_result.config_hash, weights_sha256)
            if existing is not None:
                return _link(existing, register.alias, pretrain_result.config_hash, weights_sha256)
            tags = {**evidence(), "weights_sha256": weights_sha256, "preset": cfg.preset, **onnx.ensure()}
            files = [*_run_files(pretrain_result), onnx.path]
            return register_backbone(backbone, onnx.example.numpy(), register.model_name, register.alias, tags,
                                     files, scores, preprocessing)  # fmt: skip

        kept = (f"The trained run folder {run_dir} and the evaluation (data/08_reporting/metrics.json) are kept: once"
                " the registry answers, register them without retraining with `kedro run --pipelines register,promote`.")  # fmt: skip
        return with_retries(register_once, register.attempts, register.retry_wait_s, kept)


def _run_files(pretrain_result: PretrainResult) -> list[Path]:
    """The run's files a version stores: config, teacher backbone and, when the run wrote them, its
    heads (they make the version usable as a distillation teacher) and its random-init backbone (what
    promote re-scores a first promotion against; the served model holds neither)."""
    run_dir = Path(pretrain_result.output_dir)
    optional = [run_dir / name for name in (HEAD_NAME, RANDOM_INIT_NAME) if (run_dir / name).is_file()]
    return [Path(pretrain_result.config), run_dir / BACKBONE_NAME, *optional]


def _link(existing: ModelVersion, alias: str, run_key: str, weights_sha256: str) -> dict[str, Any]:
    registration = link_version(existing, alias)
    log.info("%s v%s was registered from the same run key %s and weights (sha256 %s): linked @%s to it, no new "
             "version", registration["name"], registration["version"], run_key, weights_sha256[:12], alias)  # fmt: skip
    return registration


def version_tags(
    pretrain_result: PretrainResult,
    metrics: dict[str, float],
    validation_report: dict[str, Any],
    data_source: dict[str, Any],
    dataset_index: DatasetIndex,
    evaluate: EvaluateParams,
) -> dict[str, str]:
    """The evidence a version carries: lineage, data, validation, collapse and evaluation scores."""
    summary = pretrain_result.summary.model_dump() if pretrain_result.summary else {}
    return {
        "git_sha": mlflow_run.current_tag("git_sha"),
        "config_hash": pretrain_result.config_hash,  # the run key; with weights_sha256 it finds identical re-runs
        "data_fingerprint": dataset_index.fingerprint,
        "label_set": json.dumps(dataset_index.classes),  # promote refuses a champion of another label set
        # with data_fingerprint: where the scores linked to the logged model were measured (promote may reuse them)
        "evaluation_protocol": evaluation_protocol(evaluate),
        "data_dvc_md5": data_source.get("dvc_md5", "untracked"),
        "data_root": data_source.get("root", "unknown"),
        "validation_status": "passed" if validation_report["success"] else "failed",
        "collapsed": str(bool(summary.get("collapse_uniform") or summary.get("collapse_one_prototype"))).lower(),
        "run_id": mlflow_run.active_run_id(),
        # Continual pretraining: the version it was warm-started from (<name>/<version>, or a run folder).
        # Distillation: the teacher's version (distilled_from) and weights.
        **pretrain_result.lineage(),
        # For people (the version page, the scorecard); promote reads the logged model's metrics, as numbers.
        **{
            f"metric.{k}": f"{v:.6f}" for k, v in metrics.items() if k.startswith(("knn_top", "linear_top", "seg_miou"))
        },
    }  # fmt: skip
