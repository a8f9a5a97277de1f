"""Pretrain: resolve the config, launch the training process, wait, return where it wrote."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

import dinoflow
from dinoflow.config import resolve_config, save_config, to_dict
from dinoflow.config.pipeline_params import LauncherParams, TunedParams
from dinoflow.contracts import DatasetIndex, PretrainResult
from dinoflow.launch.local import run_process, training_command
from dinoflow.launch.manifests import job_name, render_training_job, write_manifests
from dinoflow.launch.remote import remote_result
from dinoflow.run_summary import pretrain_line
from dinoflow.tracking import mlflow_run
from dinoflow.tracking.mlflow_sink import PENDING_NAME, read_pending
from dinoflow.train.run_files import (
    BACKBONE_NAME,
    DISTILL_KEY,
    INIT_DIR,
    INIT_FILES,
    TEACHER_DIR,
    TEACHER_FILES,
    require_backbone_files,
)

log = logging.getLogger(__name__)
K8S_BASE = Path("k8s") / "base"  # the kustomize base the Kubernetes launcher renders from


# What training executes: a change here must not reuse a run trained by the old code.
TRAINING_CODE = ("config", "models", "losses", "train", "data/multicrop.py", "data/masking.py", "data/loader.py",
                 "data/shards.py")  # fmt: skip


def training_code_fingerprint(root: Path | None = None) -> str:
    """sha256 over the source of the training code (the same files the DVC pretrain stage tracks)
    under the package ``root`` (default: the installed ``dinoflow``)."""
    root = root or Path(dinoflow.__file__).parent
    digest = hashlib.sha256()
    for part in TRAINING_CODE:
        files = sorted((root / part).rglob("*.py")) if (root / part).is_dir() else [root / part]
        files = [f for f in files if f.exists()]
        for path in files:
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


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


def tuned_overrides(tuned: TunedParams, record: dict[str, Any] | None) -> list[str]:
    """``key=value`` overrides from the last tuning study's ``record`` (the catalog's
    ``tuned_pretrain``; None before any study) when ``pretrain_tuned.use`` is on."""
    if not tuned.use:
        return []
    if not record:
        raise FileNotFoundError(
            "pretrain_tuned.use is true but no tuning study has a complete trial yet (the catalog's tuned_pretrain, "
            "data/07_model_output/tuned_pretrain.yml, is missing or empty): run `make tune` first"
        )
    log.info("applying tuned values of study %s trial %s: %s", record["study"], record["trial"], record["overrides"])
    mlflow_run.set_tags({"tuned.study": record["study"], "tuned.trial": record["trial"]})
    return [f"{key}={value}" for key, value in record["overrides"].items()]


def run_key(config: dict[str, Any], dataset_fingerprint: str, code: str = "", init_weights: str = "") -> str:
    """Checkpoint directory name: same config, data, training code and warm-start weights (their
    sha256; "" for a cold start) → same directory → resume an interrupted run or reuse a finished
    one. The weights count, not only ``init_from``: ``@champion`` moves between runs."""
    payload = {"config": config, "data": dataset_fingerprint, "code": code, "init": init_weights}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def init_source(
    init_from: str, workdir: Path, files: tuple[str, ...] = INIT_FILES, key: str = "pretrain.init_from"
) -> tuple[Path, dict[str, str]]:
    """The folder holding the warm-start source's backbone files (a registered version's are
    downloaded into ``workdir``) and its lineage tags: ``parent_model_version`` (``<name>/<version>``,
    or the folder as given) and ``parent_weights_sha256``. ``files`` and ``key``: what the folder must
    hold and the config key its error names (a distillation teacher needs its heads too)."""
    if init_from.startswith("models:/"):
        from dinoflow.registry.mlflow_registry import download_backbone_files, registered_version  # torch: here only

        version = registered_version(init_from)
        folder, parent = download_backbone_files(version, workdir), f"{version.name}/{version.version}"
    else:
        folder, parent = Path(init_from), init_from
    require_backbone_files(folder, init_from, files, key)
    with (folder / BACKBONE_NAME).open("rb") as f:
        weights_sha256 = hashlib.file_digest(f, "sha256").hexdigest()
    return folder, {"parent_model_version": parent, "parent_weights_sha256": weights_sha256}


def stage_init(source: Path, output_dir: Path, subdir: str = INIT_DIR, files: tuple[str, ...] = INIT_FILES) -> Path:
    """Copy the source's ``files`` (``config.yaml`` and weights) into ``<output_dir>/<subdir>``, where
    the training process reads them (pods too: the run folder is on the checkpoints claim). Done once
    per run folder; the copy is renamed into place whole, so a present folder is complete."""
    staged = output_dir / subdir
    if not staged.is_dir():
        output_dir.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=f".{subdir}-", dir=output_dir))
        for name in files:
            shutil.copyfile(source / name, partial / name)
        partial.rename(staged)
    return staged


def _sources(cfg, workdir: Path) -> tuple[dict[str, str], list[tuple[Path, str, tuple[str, ...]]]]:
    """Lineage tags and the (folder, subdir, files) to stage of the warm-start source and of the
    distillation teacher; the teacher's tags are ``distilled_from`` and ``teacher_weights_sha256``."""
    lineage, sources = {}, []
    if cfg.init_from is not None:  # continual pretraining: the process reads <run folder>/init
        folder, lineage = init_source(cfg.init_from, workdir / INIT_DIR)
        sources.append((folder, INIT_DIR, INIT_FILES))
    if cfg.distill_from is not None:  # distillation: the process reads its frozen teacher in <run folder>/teacher
        folder, teacher = init_source(cfg.distill_from, workdir / TEACHER_DIR, TEACHER_FILES, DISTILL_KEY)
        lineage |= {"distilled_from": teacher["parent_model_version"],
                    "teacher_weights_sha256": teacher["parent_weights_sha256"]}  # fmt: skip
        sources.append((folder, TEACHER_DIR, TEACHER_FILES))
    return lineage, sources


@dataclass(frozen=True)
class RunFolder:
    """Where one (config, data, code, warm-start weights) run lives, and the lineage tags it carries."""

    key: str
    output_dir: Path
    config_path: Path
    lineage: dict[str, str]

    @property
    def summary_path(self) -> Path:
        return self.output_dir / "summary.json"


def pretrain_node(
    dataset_index: DatasetIndex,
    pretrain: dict[str, Any],
    presets: dict[str, Any],
    launcher: LauncherParams,
    tuned: TunedParams | None = None,
    tuned_values: dict[str, Any] | None = None,
) -> tuple[PretrainResult, pd.DataFrame]:
    """Train (or resume, or reuse a finished run of the same config on the same data).

    Returns:
        The run's ``PretrainResult`` (folder, checkpoint, config, run key, summary, MLflow run) and
        the training curve. With ``pretrain_launcher.kind: kubernetes`` the pods write to the checkpoints
        claim; when it is not mounted at ``output_root`` here (or after a dry run), the result names
        the checkpoint's location on the claim and the Job instead, and the curve is empty. With
        ``pretrain.init_from``, both also hold ``parent_model_version`` and ``parent_weights_sha256``
        (tags of the MLflow run too); with ``pretrain.distill_from``, ``distilled_from`` and
        ``teacher_weights_sha256``.
    """
    cfg = resolve_config(pretrain, presets, tuned_overrides(tuned, tuned_values) if tuned is not None else ())
    config = to_dict(cfg)
    run = prepare_run_folder(cfg, config, dataset_index.fingerprint, Path(launcher.output_root))
    _log_run_inputs(cfg, config, run, dataset_index)
    remote = _train(launcher, run, Path(dataset_index.dir))
    if remote is not None:
        return remote, pd.DataFrame()
    result = PretrainResult(
        output_dir=str(run.output_dir),
        checkpoint=str(run.output_dir / "checkpoint.pt"),
        config=str(run.config_path),
        config_hash=run.key,
        summary=json.loads(run.summary_path.read_text()),
        mlflow_run_id=mlflow_run.child_process_env()["MLFLOW_RUN_ID"],
        **run.lineage,  # register tags the version with it
    )
    summary = result.summary.model_dump()
    mlflow_run.add_to_description([pretrain_line(cfg.preset, mlflow_run.data_name(), run.key, summary)])
    return result, training_curve(run.output_dir / "metrics.jsonl")


def prepare_run_folder(cfg, config: dict[str, Any], dataset_fingerprint: str, output_root: Path) -> RunFolder:
    """The run's folder, named by its key, holding its ``config.yaml`` and the staged warm-start
    source and distillation teacher (their weights are part of the key). ``config``: ``to_dict(cfg)``."""
    with tempfile.TemporaryDirectory(prefix="dinoflow-init-") as workdir:
        lineage, sources = _sources(cfg, Path(workdir))
        weights = lineage.get("parent_weights_sha256", "") + lineage.get("teacher_weights_sha256", "")
        key = run_key(config, dataset_fingerprint, training_code_fingerprint(), weights)
        output_dir = output_root / key
        for source, subdir, files in sources:
            stage_init(source, output_dir, subdir, files)
    return RunFolder(key, output_dir, save_config(cfg, output_dir / "config.yaml"), lineage)


def _log_run_inputs(cfg, config: dict[str, Any], run: RunFolder, dataset_index: DatasetIndex) -> None:
    mlflow_run.log_params(config, prefix="pretrain.")
    mlflow_run.log_artifact(run.config_path, "config")
    mlflow_run.set_tags({"config_hash": run.key, "preset": cfg.preset, **run.lineage})
    mlflow_run.name_run(cfg.preset, run.key)
    mlflow_run.log_dataset("training", "train", dataset_index.fingerprint, dataset_index.dir)


def _train(launcher: LauncherParams, run: RunFolder, dataset_dir: Path) -> PretrainResult | None:
    """Train here or on Kubernetes, resume, or reuse a finished run. None when the run folder here
    holds the finished run; otherwise the remote result (the pods' folder is not readable here)."""
    rendered_only = launcher.kind == "kubernetes" and launcher.kubernetes.dry_run
    if rendered_only:  # the manifests are written even when a finished run is reused below
        launch_on_kubernetes(launcher, run.key, run.config_path)
    if run.summary_path.exists():
        log.info("reusing the finished run in %s (same config, same data)", run.output_dir)
        mlflow_run.log_metric_history(training_curve(run.output_dir / "metrics.jsonl").to_dict("records"))
        mlflow_run.set_tags({"pretrain.reused": "true"})
        return None
    if launcher.kind != "kubernetes":
        command = training_command(run.config_path, dataset_dir, run.output_dir, launcher.nproc_per_node, ["mlflow"])
        env = mlflow_run.child_process_env(launcher.system_metrics_interval_s)
        run_process(command, env=env, timeout_s=launcher.timeout_s)
        replay_buffered_metrics(run.output_dir / PENDING_NAME)
        return None
    job = None if rendered_only else launch_on_kubernetes(launcher, run.key, run.config_path)
    if job is not None and run.summary_path.exists():
        return None
    result = remote_result(launcher, run.key, job, mlflow_run.child_process_env()["MLFLOW_RUN_ID"], run.lineage)
    if job is not None:
        log.warning("the checkpoint is at %s; mount that claim at %s where the pipeline runs (the scheduled overlay"
                    " does) for evaluation to read it", result.checkpoint, launcher.output_root)  # fmt: skip
    return result


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
