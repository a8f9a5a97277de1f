"""Kedro hooks: one MLflow run per pipeline run, each node's outputs on its page, the time each node
took, a summary of what was produced, no validation report of an earlier run left to pass for this
run's, and one run at a time per project."""

from __future__ import annotations

import atexit
import importlib.metadata
import logging
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl
from rich.console import Console
from rich.panel import Panel

from dinoflow import project_lock, run_summary
from dinoflow.config import resolve_config
from dinoflow.config.pipeline_params import EvaluateParams
from dinoflow.tracking import mlflow_run, run_page
from dinoflow.validation import DataValidationError

log = logging.getLogger(__name__)

# Sections logged by the pretrain node in resolved form instead of raw.
_RESOLVED_ELSEWHERE = ("pretrain", "pretrain_presets")
# Validation reports named, with their catalog paths, in the message of a failed validation.
REPORTS_IN_STOP = {"validation_report": "validation report", "quarantine_report": "quarantine list"}
# Outputs of data validation removed before a run that produces them: after a failed or interrupted
# run, what is left is this run's or nothing (never an earlier run's).
FRESH_EACH_RUN = ("validation_report", "quarantine_report", "clean_manifest")


def catalog_paths(context) -> dict[str, str]:
    """Catalog entry name -> where it is written (relative to the project): a file's ``filepath``, or
    the folder (``path/``) of a partitioned dataset such as the pictures."""
    entries = context.config_loader["catalog"].items()
    return {
        name: entry.get("filepath") or f"{entry['path']}/"
        for name, entry in entries
        if isinstance(entry, dict) and ("filepath" in entry or "path" in entry)
    }


def _git(project_path: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=project_path, capture_output=True, text=True, check=False)
    return result.stdout.strip() if result.returncode == 0 else ""


def reproducibility_tags(project_path: Path) -> dict[str, str]:
    """What it takes to repeat a run: code version (and whether it had local edits), library versions."""
    tags = {
        "git_sha": _git(project_path, "rev-parse", "HEAD") or "unknown",
        "git_dirty": str(bool(_git(project_path, "status", "--porcelain", "--untracked-files=no"))).lower(),
    }
    for package in ("torch", "timm", "kedro", "mlflow", "dvc", "great_expectations"):
        tags[f"version.{package}"] = importlib.metadata.version(package.replace("_", "-"))
    return tags


class MlflowRunHook:
    """Opens the run before the pipeline, closes it FINISHED or FAILED, prints a summary."""

    def __init__(self) -> None:
        self.project_path = Path.cwd()
        self.params: dict[str, Any] = {}
        self.run_id: str | None = None
        self.paths: dict[str, str] = {}
        self.started: dict[str, float] = {}
        self.stage_seconds: dict[str, float] = {}
        self.pipeline_started = time.perf_counter()
        atexit.register(self._end_interrupted_run)  # before MLflow's own, which would say FINISHED

    def _end_interrupted_run(self) -> None:
        """A run stopped by SIGTERM or Ctrl-C (no ``on_pipeline_error``) ends KILLED, not FINISHED."""
        if self.run_id and mlflow_run.active_run_id() == self.run_id:
            try:
                mlflow_run.set_tags({"error": "the run was stopped before its end (SIGTERM or Ctrl-C)"})
                mlflow_run.end_run("KILLED")
            except Exception as error:  # noqa: BLE001 (at exit: say it, do not raise)
                log.warning("could not mark MLflow run %s KILLED: %s", self.run_id, error)

    @hook_impl
    def after_context_created(self, context) -> None:
        self.project_path = Path(context.project_path)
        self.params = dict(context.params)
        self.paths = catalog_paths(context)

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline, catalog) -> None:
        self.pipeline_started = time.perf_counter()
        if any(node.name == "pretrain_node" for node in pipeline.nodes):
            # Fail before hours of data work, not at the pretrain node: errors name the key.
            resolve_config(self.params["pretrain"], self.params.get("pretrain_presets", {}))
        tracking = self.params.get("tracking", {})
        names = run_params.get("pipeline_names") or ["__default__"]
        self.run_id = mlflow_run.start_run(
            self.project_path,
            experiment=tracking.get("experiment", "dinoflow"),
            run_name="+".join(names),
            tags={
                **reproducibility_tags(self.project_path),
                "kedro.run_id": str(run_params.get("run_id", "")),
                "kedro.pipelines": ",".join(names),
                "kedro.runtime_params": str(run_params.get("runtime_params") or {}),
            },
        )
        mlflow_run.log_params({k: v for k, v in self.params.items() if k not in _RESOLVED_ELSEWHERE})
        if "data_source" not in pipeline.all_outputs() and catalog.exists("data_source"):
            # Runs that start after ingestion still name the data version they used.
            mlflow_run.set_tags({f"data.{k}": v for k, v in catalog.load("data_source").items()})
        if "dataset_index" not in pipeline.all_outputs() and catalog.exists("dataset_index"):
            mlflow_run.set_tags({"data.fingerprint": catalog.load("dataset_index").fingerprint})

    @hook_impl
    def before_node_run(self, node) -> None:
        self.started[node.name] = time.perf_counter()

    @hook_impl
    def after_node_run(self, node) -> None:
        seconds = time.perf_counter() - self.started.pop(node.name)
        self.stage_seconds[node.name] = seconds
        mlflow_run.log_metrics({f"stage_seconds.{node.name}": seconds})

    @hook_impl
    def on_pipeline_error(self, error: Exception, run_params, pipeline, catalog) -> None:
        mlflow_run.set_tags({"error": f"{type(error).__name__}: {error}"[:5000]})
        mlflow_run.end_run("FAILED")

    @hook_impl
    def after_pipeline_run(self, run_params, run_result, pipeline, catalog) -> None:
        pipeline_seconds = time.perf_counter() - self.pipeline_started
        times = {"pipeline_seconds": pipeline_seconds, "nodes": self.stage_seconds}
        catalog.save("stage_times", times)  # the catalog's stage_times: seconds per node of the last run
        mlflow_run.log_metrics({"stage_seconds.pipeline": pipeline_seconds})
        mlflow_run.end_run("FINISHED")
        self._print_summary(pipeline.all_outputs(), catalog)

    def _print_summary(self, produced: set[str], catalog) -> None:
        lines = [
            f"MLflow run: {self.run_id}  (experiment '{self.params.get('tracking', {}).get('experiment', 'dinoflow')}')"
        ]
        if "metrics" in produced:
            evaluate = EvaluateParams.model_validate(self.params["evaluate"])  # Kedro may have validated it
            lines += run_summary.evaluation_lines(catalog.load("metrics"), evaluate.knn_k, evaluate.knn_temperature)
        if "registration" in produced:
            lines.append(run_summary.registration_line(catalog.load("registration")))
        written = sorted((name, self.paths[name]) for name in produced if name in self.paths)
        if written:
            lines.append("Wrote: " + ", ".join(f"{name} → {path}" for name, path in written))
        if "promotion" in produced:
            lines += run_summary.promotion_lines(catalog.load("promotion"))
        slowest = sorted(self.stage_seconds.items(), key=lambda item: -item[1])[:4]
        lines.append("Time per node: " + ", ".join(f"{name.removesuffix('_node')} {s:.0f} s" for name, s in slowest)
                     + f" (all: {self.paths['stage_times']})")  # fmt: skip
        local = "" if mlflow_run.on_a_server() else "make mlflow-ui, then "
        console = Console()
        console.print(Panel("\n".join(lines), title="dinoflow run summary", expand=False))
        # Below the box, on one line: an address broken over the box's lines could not be clicked.
        console.print(f"Open the MLflow UI: {local}{mlflow_run.ui_address(run_id=self.run_id)}", soft_wrap=True)


class RunPageHook:
    """After each node, logs its outputs to the pipeline's MLflow run (``tracking.run_page``):
    the nodes return plain values and never call MLflow themselves."""

    @hook_impl
    def after_node_run(self, inputs: dict[str, Any], outputs: dict[str, Any]) -> None:
        run_page.log_node_outputs(inputs, outputs)


class ValidationReportsHook:
    """When a run that validates data starts its first node, removes the files of the validation's
    outputs (``FRESH_EACH_RUN``): the validation node rewrites them even when the run then stops,
    and a run that fails between its first node and the validation leaves none, so no report of an
    earlier run can be read as this run's. A run refused before any node leaves them alone.
    When the validation stops the run, adds the reports' paths to its message."""

    def __init__(self) -> None:
        self.project_path = Path.cwd()
        self.paths: dict[str, str] = {}
        self.stale: list[str] = []

    @hook_impl
    def after_context_created(self, context) -> None:
        self.project_path = Path(context.project_path)
        self.paths = catalog_paths(context)

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline, catalog) -> None:
        self.stale = [name for name in FRESH_EACH_RUN if name in pipeline.all_outputs() and name in self.paths]

    @hook_impl
    def before_node_run(self, node) -> None:
        # At the first node, not at the pipeline's start: a run refused before any node (bad
        # parameters, a held project lock) leaves the last run's reports as they are.
        for name in self.stale:
            path = self.project_path / self.paths[name]
            if path.is_file():
                path.unlink()
                log.info("removed %s of an earlier run (%s): this run writes it anew", name, self.paths[name])
        self.stale = []

    @hook_impl
    def on_node_error(self, error: Exception, node) -> None:
        if isinstance(error, DataValidationError):
            reports = {what: self.paths[name] for name, what in REPORTS_IN_STOP.items() if name in self.paths}
            error.reports = {**reports, **error.reports}


class ProjectLockHook:
    """One run at a time per project (``dinoflow.project_lock``): takes the project lock before any
    other hook and node, so a second run **refuses at once**, naming the run that holds the project
    (it does not wait), before it opens an MLflow run or touches a file.

    The lock is released on every exit path: after the run (last of the hooks), on an error, and at
    interpreter exit: a run stopped before its first node, Ctrl-C, or SIGTERM, which is turned into
    ``RunTerminated`` in the main thread (so a launched training process is stopped too and the
    MLflow run ends KILLED). A SIGKILLed run leaves its file; the next run replaces it.
    """

    def __init__(self) -> None:
        self.project_path = Path.cwd()
        self.fd: int | None = None
        self.previous_sigterm: Any = None
        atexit.register(self.release)

    @property
    def path(self) -> Path:
        return self.project_path / project_lock.LOCK_FILE

    @hook_impl
    def after_context_created(self, context) -> None:
        self.project_path = Path(context.project_path)

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, run_params: dict[str, Any]) -> None:
        self.release()  # a run of this process that stopped before its first node
        run = {"kedro_run_id": str(run_params.get("run_id", "")),
               "pipelines": ",".join(run_params.get("pipeline_names") or ["__default__"])}  # fmt: skip
        if threading.current_thread() is threading.main_thread():  # before the lock: no SIGTERM leaves it
            self.previous_sigterm = signal.signal(signal.SIGTERM, self._on_sigterm)
        try:
            self.fd = project_lock.acquire(self.path, run)
        except project_lock.ProjectBusyError:
            self.release()
            raise

    @hook_impl(trylast=True)
    def after_pipeline_run(self) -> None:
        self.release()

    @hook_impl(trylast=True)
    def on_pipeline_error(self) -> None:
        self.release()

    def release(self) -> None:
        """Drop the lock and restore the SIGTERM handler, if this process holds the lock."""
        if self.previous_sigterm is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.previous_sigterm)
            self.previous_sigterm = None
        if self.fd is not None:
            fd, self.fd = self.fd, None
            project_lock.release(self.path, fd)

    def _on_sigterm(self, signum: int, frame) -> None:
        raise project_lock.RunTerminated(f"the run was stopped by signal {signal.Signals(signum).name}")
