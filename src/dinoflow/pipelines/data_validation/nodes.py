"""Data validation: the Great Expectations suites decide; bad rows are quarantined, never dropped."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from dinoflow.config.pipeline_params import DataParams, ValidationParams
from dinoflow.data.manifest import quarantine_summary, reason_of
from dinoflow.tracking import mlflow_run
from dinoflow.validation.manifest_suite import validate_manifest

log = logging.getLogger(__name__)


class DataValidationError(RuntimeError):
    """The manifest failed its expectations; the message lists which."""


def log_quarantine_summary(quarantine: pd.DataFrame) -> None:
    """One line per quarantine reason with its count and up to 3 example paths (not one per file)."""
    for reason, count, examples in quarantine_summary(quarantine.to_dict("records")):
        more = ", ..." if count > len(examples) else ""
        if reason == "duplicate":
            log.info("dropped %d exact duplicate(s) (e.g. %s%s)", count, ", ".join(examples), more)
        else:
            log.warning("quarantined %d file(s): %s (e.g. %s%s)", count, reason, ", ".join(examples), more)


def validate_manifest_node(
    manifest: pd.DataFrame, data: DataParams, validation: ValidationParams
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Returns: (clean rows, quarantined rows with reasons, validation report)."""
    report = validate_manifest(
        manifest,
        data.min_size,
        validation.max_quarantine_share,
        validation.max_class_imbalance,
        Path(validation.docs_root),
    )
    mlflow_run.log_dict(report, "validation/gx_result.json")
    mlflow_run.log_artifacts(Path(report["data_docs"]).parent, "validation/data_docs")
    mlflow_run.log_metrics({f"data_{k}": v for k, v in report["statistics"].items()})
    mlflow_run.set_tags({"validation_status": "passed" if report["success"] else "failed"})
    quarantine = manifest[manifest["status"] != "ok"]
    quarantine = quarantine.assign(reason=quarantine["status"].map(reason_of))
    log_quarantine_summary(quarantine)
    if not report["success"]:
        raise DataValidationError("data validation failed:\n  " + "\n  ".join(report["messages"]))
    return (
        manifest[manifest["status"] == "ok"].reset_index(drop=True),
        quarantine.reset_index(drop=True),
        report,
    )
