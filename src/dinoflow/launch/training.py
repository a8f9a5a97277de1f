"""Train a planned run here (``torchrun``) or on Kubernetes, resume it, or reuse it when finished;
the training process logs into the pipeline's MLflow run (``MLFLOW_RUN_ID``), and what it could
not deliver during a tracking outage is replayed afterwards."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from dinoflow.config.pipeline_params import LauncherParams
from dinoflow.contracts import PretrainPlan, PretrainResult
from dinoflow.launch.local import run_process, training_command
from dinoflow.launch.manifests import job_name, render_training_job, write_manifests
from dinoflow.launch.remote import remote_result
from dinoflow.tracking import mlflow_run
from dinoflow.tracking.mlflow_sink import PENDING_NAME, read_pending

log = logging.getLogger(__name__)
K8S_BASE = Path("k8s") / "base"  # the kustomize base the Kubernetes launcher renders from


def train_run(plan: PretrainPlan, launcher: LauncherParams, dataset_dir: Path) -> PretrainResult:
    """Train, resume or reuse the planned run. A local result when its folder is here (a finished
    run reused: ``reused``); otherwise the remote result (the pods' folder is not readable here)."""
    rendered_only = launcher.kind == "kubernetes" and launcher.kubernetes.dry_run
    if rendered_only:  # the manifests are written even when a finished run is reused below
        launch_on_kubernetes(launcher, plan.key, Path(plan.config_path))
    reused = plan.summary_path.exists()
    if reused:
        log.info("reusing the finished run in %s (same config, same data)", plan.output_dir)
    elif launcher.kind != "kubernetes":
        command = training_command(plan.config_path, dataset_dir, plan.output_dir, launcher.nproc_per_node, ["mlflow"])
        run_process(command, env=mlflow_run.child_process_env(launcher.system_metrics_interval_s),
                    timeout_s=launcher.timeout_s)  # fmt: skip
        replay_buffered_metrics(Path(plan.output_dir) / PENDING_NAME)
    else:
        job = None if rendered_only else launch_on_kubernetes(launcher, plan.key, Path(plan.config_path))
        if job is None or not plan.summary_path.exists():
            return _remote(launcher, plan, job)
    return PretrainResult(
        output_dir=plan.output_dir,
        checkpoint=str(Path(plan.output_dir) / "checkpoint.pt"),
        config=plan.config_path,
        config_hash=plan.key,
        summary=json.loads(plan.summary_path.read_text()),
        mlflow_run_id=mlflow_run.child_process_env()["MLFLOW_RUN_ID"],
        reused=reused,
        **plan.lineage,  # register tags the version with it
    )


def _remote(launcher: LauncherParams, plan: PretrainPlan, job: str | None) -> PretrainResult:
    result = remote_result(launcher, plan.key, job, mlflow_run.child_process_env()["MLFLOW_RUN_ID"], plan.lineage)
    if job is not None:
        log.warning("the checkpoint is at %s; mount that claim at %s where the pipeline runs (the scheduled overlay"
                    " does) for evaluation to read it", result.checkpoint, launcher.output_root)  # fmt: skip
    return result


def replay_buffered_metrics(pending: Path) -> None:
    """Deliver what the training process kept on disk during a tracking outage."""
    if not pending.exists():
        return
    records = [{k: v for k, v in r.items() if k != "time_ms"} for r in read_pending(pending)]
    try:
        mlflow_run.log_metric_history(records)
    except Exception:  # noqa: BLE001 (still unreachable: keep the file, say where it is)
        log.error("MLflow still unreachable: %d metric records stay in %s", len(records), pending)
        return
    pending.unlink()
    log.info("delivered %d metric records buffered during a tracking outage", len(records))


def launch_on_kubernetes(launcher: LauncherParams, key: str, config_path: Path) -> str | None:
    """Render the run's Job from ``k8s/base`` and submit it (None after a dry run).

    Rank 0 logs into this pipeline's MLflow run when the pods can reach its server; with a local
    file store they cannot, and the curve is replayed from ``metrics.jsonl`` afterwards instead.
    """
    params = launcher.kubernetes
    env = mlflow_run.child_process_env()
    uri = params.tracking_uri or (env["MLFLOW_TRACKING_URI"] if env["MLFLOW_TRACKING_URI"].startswith("http") else None)
    documents = render_training_job(K8S_BASE, key, config_path.read_text(), params, launcher.nproc_per_node, uri,
                                    env["MLFLOW_RUN_ID"])  # fmt: skip
    path = write_manifests(documents, Path(params.manifests_dir) / f"{job_name(key)}.yaml")
    mlflow_run.set_tags({"pretrain.launcher": "kubernetes", "pretrain.k8s_job": job_name(key)})
    if params.dry_run:
        log.info("dry run: manifests written to %s (apply with `kubectl apply -f %s`)", path, path)
        return None
    from dinoflow.launch.kubernetes import run_job  # only needed (and imported) with a cluster

    outcome = run_job(documents, params.context, launcher.timeout_s, params.poll_s)
    log.info("Job %s finished in %.0f s", outcome.name, outcome.seconds)
    metrics_log = Path(launcher.output_root) / key / "metrics.jsonl"
    if uri is None and metrics_log.exists():
        mlflow_run.log_metric_history(training_curve(metrics_log).to_dict("records"))
    return outcome.name


def training_curve(metrics_log: Path) -> pd.DataFrame:
    """The run's per-step metrics as a table (one row per logging step; a resumed run's repeated
    steps keep their last record)."""
    records = [json.loads(line) for line in metrics_log.read_text().splitlines()]
    return pd.DataFrame(records).drop_duplicates("step", keep="last").sort_values("step").reset_index(drop=True)
