"""MLflow run lifecycle and logging for the pipelines (the only module, with ``mlflow_sink``
and ``registry``, that imports mlflow).

Default store: ``sqlite:///<project>/mlflow.db`` with artifacts in ``<project>/mlruns``;
``MLFLOW_TRACKING_URI`` overrides it (a team server, PostgreSQL behind it).
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import mlflow
from mlflow.data.meta_dataset import MetaDataset
from mlflow.data.sources import LocalArtifactDatasetSource
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from PIL import Image

log = logging.getLogger(__name__)
MAX_PARAM_LENGTH = 6000  # MLflow's limit on a param value
# The experiment tag MLflow 3's UI reads for the experiment's kind (its JS enum; no Python
# constant exists): without it an experiment opens on the GenAI trace overview, not on its runs.
EXPERIMENT_KIND_TAG, MODEL_TRAINING = "mlflow.experimentKind", "custom_model_development"
NOTE_TAG = "mlflow.note.content"  # the run's description (markdown) on its page in the UI
# Read by the training process's sink (``mlflow_sink``): seconds between system-metric samples.
SYSTEM_METRICS_ENV = "DINOFLOW_SYSTEM_METRICS_INTERVAL_S"
DIGEST_CHARS = 12  # of the dataset fingerprint shown as an MLflow dataset digest (MLflow keeps <= 36)


# MLflow metric names are grouped with ``/`` prefixes (the UI makes a chart section per prefix);
# the flat names stay everywhere else (metrics.json, metrics.jsonl, registry tags ``metric.*``).
# (group, names, name prefixes): the first that matches gives the prefix.
_GROUPS = (
    ("health", {"teacher_entropy", "teacher_batch_entropy", "feature_std", "loss_gap_to_ln_k", "collapse_uniform",
                "collapse_one_prototype"}, ()),
    ("train", {"loss", "lr", "weight_decay", "teacher_momentum", "teacher_temp", "grad_norm", "epoch"}, ("loss_",)),
    ("time", {"images_per_s"}, ()),
    ("eval", set(), ("knn_", "linear_", "seg_", "eval_", "online_knn_")),
    ("tune", {"trials", "complete", "pruned", "failed", "best_online_knn_top1"}, ()),
)  # fmt: skip
_RENAMED_PREFIXES = {"stage_seconds.": "time/", "data_": "data/", "promotion.": "promotion/"}


def metric_name(key: str) -> str:
    """The MLflow name of a flat metric key (the table is in the README): ``loss`` ->
    ``train/loss``, ``teacher_entropy`` -> ``health/teacher_entropy``, ``knn_top1`` ->
    ``eval/knn_top1``, ``stage_seconds.pretrain_node`` -> ``time/pretrain_node``; a name that
    already has a ``/``, or that no rule knows, stays as it is."""
    if "/" in key:
        return key
    for group, names, prefixes in _GROUPS:
        if key in names or key.startswith(prefixes):
            return f"{group}/{key}"
    for old, new in _RENAMED_PREFIXES.items():
        if key.startswith(old):
            return new + key.removeprefix(old)
    return key


def tracking_uri(project_path: Path) -> str:
    """``MLFLOW_TRACKING_URI``, else the project's sqlite store. Credentials in a server URL
    (``http://user:password@host``) are moved into ``MLFLOW_TRACKING_USERNAME`` / ``_PASSWORD``
    (MLflow's basic-auth variables, inherited by the training process), so that the URL MLflow and
    we print, log and hand to pods carries none."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(project_path).resolve() / 'mlflow.db'}"
    parts = urlsplit(uri)
    if parts.scheme in ("http", "https") and parts.password is not None:
        os.environ["MLFLOW_TRACKING_USERNAME"] = unquote(parts.username or "")
        os.environ["MLFLOW_TRACKING_PASSWORD"] = unquote(parts.password)
        uri = os.environ["MLFLOW_TRACKING_URI"] = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
    return uri


_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]+):[^@\s]+@")


def redact(text: str) -> str:
    """``scheme://user:secret@host`` → ``scheme://user:***@host``: credentials never reach a log or a run."""
    return _URL_PASSWORD.sub(r"\g<head>:***@", text)


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"a": {"b": 1}}`` → ``{"a.b": "1"}`` so runs compare key by key in the UI (passwords in
    URLs redacted)."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if hasattr(value, "model_dump"):  # validated parameter models
            value = value.model_dump()
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = json.dumps(value) if isinstance(value, list | tuple) else str(value)
    return {k: redact(v)[:MAX_PARAM_LENGTH] for k, v in flat.items()}


def ensure_experiment(project_path: Path, experiment: str) -> str:
    """Create ``experiment`` when missing (artifacts on local disk next to the sqlite file by
    default) and mark it a model-training experiment unless it already has a kind; returns its id."""
    mlflow.set_tracking_uri(tracking_uri(project_path))
    found = mlflow.get_experiment_by_name(experiment)
    if found is None:
        artifact_root = None
        if tracking_uri(project_path).startswith("sqlite:"):
            artifact_root = (Path(project_path).resolve() / "mlruns").as_uri()
        tags = {EXPERIMENT_KIND_TAG: MODEL_TRAINING}
        return mlflow.create_experiment(experiment, artifact_location=artifact_root, tags=tags)
    if EXPERIMENT_KIND_TAG not in found.tags:  # a store made before the kind was set
        MlflowClient().set_experiment_tag(found.experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING)
    return found.experiment_id


# MLflow 3's UI opens in its GenAI view unless the address asks for the model-training one (the
# choice made with its top-left switch is then remembered by the browser).
UI_WORKFLOW = "workflowType=machine_learning"
LOCAL_UI = "http://127.0.0.1:5000"  # where `make mlflow-ui` serves a local store


def on_a_server() -> bool:
    return mlflow.get_tracking_uri().startswith(("http://", "https://"))


def ui_address(experiment_id: str | None = None, run_id: str | None = None) -> str:
    """The UI page of an experiment (its runs list) or of a run, in the model-training view: on
    the tracking server when there is one, else on ``make mlflow-ui``'s local address."""
    if experiment_id is None:
        experiment_id = MlflowClient().get_run(run_id).info.experiment_id
    base = mlflow.get_tracking_uri().rstrip("/") if on_a_server() else LOCAL_UI
    page = f"#/experiments/{experiment_id}" + (f"/runs/{run_id}" if run_id else "")
    return f"{base}/{page}?{UI_WORKFLOW}"


def print_ui_address(project_path: Path = Path(), experiment: str = "dinoflow") -> None:
    """For ``make mlflow-ui``: where to open the UI on the project's experiment."""
    mlflow.set_tracking_uri(tracking_uri(project_path))
    found = mlflow.get_experiment_by_name(experiment)
    print(f"MLflow UI: {ui_address(found.experiment_id) if found else LOCAL_UI}")  # noqa: T201 (a CLI line)


def start_run(project_path: Path, experiment: str, run_name: str, tags: Mapping[str, str]) -> str:
    """Open the pipeline's run in ``experiment`` (see ``ensure_experiment``), tagged with the
    process that owns it, after closing the runs a killed process of this project left open."""
    experiment_id = ensure_experiment(project_path, experiment)
    mlflow.set_experiment(experiment_id=experiment_id)
    owner = _owner(project_path)
    end_abandoned_runs(experiment_id, owner)
    tags = {**tags, **owner, OWNER_PID_TAG: str(os.getpid())}
    return mlflow.start_run(run_name=run_name, tags={k: redact(str(v)) for k, v in tags.items()}).info.run_id


OWNER_PID_TAG = "dinoflow.pid"


def _owner(project_path: Path) -> dict[str, str]:
    return {"dinoflow.host": socket.gethostname(), "dinoflow.project": str(Path(project_path).resolve())}


def end_abandoned_runs(experiment_id: str, owner: Mapping[str, str]) -> list[str]:
    """Mark KILLED the runs of this project on this host that are still RUNNING although the
    pipeline process that opened them is gone (SIGKILL, the OOM killer: no exit hook ran). Runs of
    other hosts or projects, and runs whose process lives, are left alone. Returns their ids."""
    query = " and ".join(["attributes.status = 'RUNNING'", *(f"tags.`{k}` = '{v}'" for k, v in owner.items())])
    ended = []
    for run in MlflowClient().search_runs([experiment_id], filter_string=query):
        pid = int(run.data.tags.get(OWNER_PID_TAG, "0"))
        if pid and not _alive(pid):
            reason = f"the pipeline process (pid {pid}) ended without closing this run (killed); closed by the next run"
            finish_run(run.info.run_id, "KILLED", {"error": reason})
            log.warning("MLflow run %s was left RUNNING by pipeline process %d, which is gone: marked KILLED",
                        run.info.run_id, pid)  # fmt: skip
            ended.append(run.info.run_id)
    return ended


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        pass
    return True


def run_name(preset: str, data_name: str, config_hash: str, started_ms: int) -> str:
    """``<preset>-<data>-<config hash[:6]>-<MMDD>-<HHMMSS>`` (local start time): tells runs apart
    in the list, and sorting by name groups a preset, a dataset and a config, oldest first."""
    data = re.sub(r"[^A-Za-z0-9_.]+", "_", data_name).strip("_") or "data"
    started = time.strftime("%m%d-%H%M%S", time.localtime(started_ms / 1000))
    return f"{preset}-{data}-{config_hash[:6]}-{started}"


def data_name(default: str = "data") -> str:
    """The run's data by its folder's name (the ``data.root`` tag that ingestion or the hook set)."""
    root = current_tag("data.root", "")
    return Path(root).name if root else default


def name_run(preset: str, config_hash: str, default_data_name: str = "data") -> str:
    """Rename the active run after what it trains (see ``run_name``); returns the name."""
    run = MlflowClient().get_run(active_run_id())
    name = run_name(preset, data_name(default_data_name), config_hash, run.info.start_time)
    MlflowClient().update_run(run.info.run_id, name=name)
    return name


def add_to_description(lines: Iterable[str]) -> None:
    """Append ``lines`` to the run's description, one per line within one paragraph."""
    current = current_tag(NOTE_TAG, "")
    mlflow.set_tag(NOTE_TAG, "  \n".join(([current] if current else []) + list(lines)))


def log_dataset(context: str, split: str, fingerprint: str, shards_dir: str) -> None:
    """Record a split of the run's data as a dataset input of the run (the UI's Dataset column).

    Named ``<data>/<split>`` with the dataset fingerprint as digest; its source is the data folder
    (the ``data.root`` tag, else ``shards_dir``); input tags hold the full fingerprint, the shards
    folder and, for DVC-tracked data, its md5.
    """
    tags = MlflowClient().get_run(active_run_id()).data.tags
    root = tags.get("data.root", shards_dir)
    dataset = MetaDataset(
        LocalArtifactDatasetSource(root), name=f"{Path(root).name}/{split}", digest=fingerprint[:DIGEST_CHARS]
    )
    lineage = {"fingerprint": fingerprint, "shards": shards_dir}
    if "data.dvc_md5" in tags:
        lineage["dvc_md5"] = tags["data.dvc_md5"]
    mlflow.log_input(dataset, context=context, tags=lineage)


def end_run(status: str = "FINISHED") -> None:
    if mlflow.active_run() is not None:
        mlflow.end_run(status=status)


def active_run_id() -> str | None:
    run = mlflow.active_run()
    return run.info.run_id if run else None


def child_process_env(system_metrics_interval_s: float | None = None) -> dict[str, str]:
    """Environment that lets a launched training process log into the active run (and sample the
    machine into it every ``system_metrics_interval_s`` seconds; None: the sink's default)."""
    env = {"MLFLOW_TRACKING_URI": mlflow.get_tracking_uri(), "MLFLOW_RUN_ID": active_run_id() or ""}
    if system_metrics_interval_s is not None:
        env[SYSTEM_METRICS_ENV] = str(system_metrics_interval_s)
    return env


def log_params(params: Mapping[str, Any], prefix: str = "") -> None:
    items = list(flatten(params, prefix).items())
    for start in range(0, len(items), 100):  # MLflow accepts at most 100 params per batch
        mlflow.log_params(dict(items[start : start + 100]))


def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    mlflow.log_metrics({metric_name(k): float(v) for k, v in metrics.items()}, step=step)


def log_metric_history(records: Iterable[Mapping[str, float]]) -> None:
    """Replay ``{"step": s, name: value, ...}`` records (e.g. a run's metrics.jsonl)."""
    metrics = [
        Metric(metric_name(key), float(value), 0, int(record["step"]))
        for record in records
        for key, value in record.items()
        if key != "step"
    ]
    client, run_id = MlflowClient(), active_run_id()
    for start in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[start : start + 1000])


def log_dict(data: Mapping[str, Any], artifact_file: str) -> None:
    mlflow.log_dict(dict(data), artifact_file)


def log_artifact(path: Path, artifact_path: str | None = None) -> None:
    mlflow.log_artifact(str(path), artifact_path)


def log_image(image: Image.Image, key: str) -> None:
    """Log a picture as an image under ``key`` (``attention_maps``): the run page shows it inline,
    beside the charts, instead of only in the artifact tree."""
    mlflow.log_image(image.convert("RGB"), key=key, step=0, synchronous=True)


def log_picture(image: Image.Image, artifact_file: str) -> None:
    """Log a picture as a PNG file of the run's artifacts (``curation/cluster_sizes.png``)."""
    mlflow.log_image(image, artifact_file=artifact_file)


def log_artifacts(directory: Path, artifact_path: str | None = None) -> None:
    mlflow.log_artifacts(str(directory), artifact_path)


def set_tags(tags: Mapping[str, Any]) -> None:
    mlflow.set_tags({k: redact(str(v)) for k, v in tags.items()})


def current_tag(name: str, default: str = "unknown") -> str:
    return MlflowClient().get_run(active_run_id()).data.tags.get(name, default)


def start_child_run(parent_run_id: str, name: str, params: Mapping[str, Any], tags: Mapping[str, str]) -> str:
    """A run nested under ``parent_run_id``, created explicitly (safe from any thread or process,
    unlike ``start_run(nested=True)``, whose parent is thread-local)."""
    client = MlflowClient()
    parent = client.get_run(parent_run_id)
    run = client.create_run(
        parent.info.experiment_id, run_name=name, tags={"mlflow.parentRunId": parent_run_id, **tags}
    )
    items = list(flatten(params).items())
    for start in range(0, len(items), 100):
        client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in items[start : start + 100]])
    return run.info.run_id


def log_metrics_to(run_id: str, metrics: Mapping[str, float], step: int) -> None:
    now = int(time.time() * 1000)
    batch = [Metric(metric_name(k), float(v), now, step) for k, v in metrics.items()]
    MlflowClient().log_batch(run_id, metrics=batch)


def finish_run(run_id: str, status: str, tags: Mapping[str, Any] = {}) -> None:  # noqa: B006 (read-only)
    client = MlflowClient()
    for key, value in tags.items():
        client.set_tag(run_id, key, str(value))
    client.set_terminated(run_id, status=status)
