"""Data validation: the Great Expectations suites decide; bad rows are quarantined, never dropped.

Two nodes, so that the reports of a failed validation are saved before the run stops:
``validate_manifest_node`` always returns the quarantine list and the report (Kedro saves them),
then ``stop_on_failed_validation_node`` raises if the suites failed, or passes the clean rows on.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from dinoflow.config.pipeline_params import DataParams, ValidationParams
from dinoflow.data.manifest import quarantine_summary, reason_of
from dinoflow.tracking import mlflow_run
from dinoflow.validation import DataValidationError

log = logging.getLogger(__name__)


def stop_message(report: dict[str, Any]) -> str:
    """The failed rules in words, then the quarantine reasons with counts (most frequent first)."""
    reasons = report.get("quarantine_reasons", {})
    broken = [f"{reason} {count}" for reason, count in reasons.items() if reason != "duplicate"]
    summary = "quarantined: " + (", ".join(broken[:5]) if broken else "nothing")
    if reasons.get("duplicate"):
        summary += f"; dropped {reasons['duplicate']} exact duplicate(s) (not counted as broken)"
    return "\n  ".join([f"data validation failed ({len(report['messages'])} rule(s)):", *report["messages"], summary])


def log_quarantine_summary(quarantine: pd.DataFrame) -> None:
    """One line per quarantine reason with its count and up to 3 example paths (not one per file)."""
    for reason, count, examples in quarantine_summary(quarantine.to_dict("records")):
        more = ", ..." if count > len(examples) else ""
        if reason == "duplicate":
            log.info("dropped %d exact duplicate(s) (e.g. %s%s)", count, ", ".join(examples), more)
        else:
            log.warning("quarantined %d file(s): %s (e.g. %s%s)", count, reason, ", ".join(examples), more)


def run_identity() -> dict[str, Any]:
    """Which run wrote a report: the Kedro session id and MLflow run id (when a pipeline hook
    opened one), the time and the process."""
    mlflow_run_id = mlflow_run.active_run_id()
    return {
        "kedro_run_id": mlflow_run.current_tag("kedro.run_id", "") if mlflow_run_id else "",
        "mlflow_run_id": mlflow_run_id or "",
        "validated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "pid": os.getpid(),
    }


def validate_manifest_node(
    manifest: pd.DataFrame, data: DataParams, validation: ValidationParams
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Run the suites; never raises on a failed rule (``stop_on_failed_validation_node`` does).

    Returns:
        (rows kept for training, quarantined rows with reasons, validation report), the report and
        every quarantine row carrying the run's identity (``run`` / ``run_id``).
    """
    # Imported here: Great Expectations takes ~3 s to import, which every `kedro run` would pay
    # when Kedro loads the pipelines, including runs without validation or refused at once.
    from dinoflow.validation.manifest_suite import validate_manifest

    report = validate_manifest(
        manifest,
        data.min_size,
        validation.max_quarantine_share,
        validation.max_class_imbalance,
        Path(validation.docs_root),
    )
    report["run"] = run_identity()
    quarantine = _quarantine(manifest, report["run"]["kedro_run_id"] or report["run"]["validated_at"])
    log_quarantine_summary(quarantine)
    return manifest[manifest["status"] == "ok"].reset_index(drop=True), quarantine, report


def _quarantine(manifest: pd.DataFrame, run_id: str) -> pd.DataFrame:
    """The rows that failed a rule, each with its reason in words and the run that refused it."""
    quarantine = manifest[manifest["status"] != "ok"]
    return quarantine.assign(reason=quarantine["status"].map(reason_of), run_id=run_id).reset_index(drop=True)


def stop_on_failed_validation_node(validated: pd.DataFrame, report: dict[str, Any]) -> pd.DataFrame:
    """The gate: raises ``DataValidationError`` (the failed rules in words) when the suites failed,
    after the reports were saved; otherwise returns the clean rows."""
    if not report["success"]:
        raise DataValidationError(stop_message(report), {"data docs": report["data_docs"]})
    return validated
