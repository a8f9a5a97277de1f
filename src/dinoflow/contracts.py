"""What one pipeline stage hands the next: frozen, validated records instead of dicts read by key.

The catalog loads and saves them as JSON (``datasets.ContractJSONDataset``), so a file written by
an older or foreign run that lacks a field fails when it is loaded, with the field named, not
later with a ``KeyError`` in the middle of a node. Only pydantic: the training core, the nodes and
the Kubernetes pods can all read them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict


class _Contract(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ShardEntry(_Contract):
    """One shard file of a split, as ``data.shards.index_entry`` lists it."""

    path: str  # relative to the dataset folder
    count: int
    bytes: int
    sha256: str


class SplitInfo(_Contract):
    count: int
    has_masks: bool
    shards: list[ShardEntry]


class DatasetIndex(_Contract):
    """The dataset node's output (``data/05_model_input/dataset/index.json``)."""

    fingerprint: str  # sha256 over the manifest's (path, sha256, label, split) rows
    settings: dict[str, Any]  # how the shards were written (format, max_side, background, ...)
    classes: list[str]  # sorted labels; empty for an unlabelled folder
    splits: dict[str, SplitInfo]
    dir: str | None = None  # the dataset folder (absent in the copy the core writes beside the shards)

    def has_masks(self) -> bool:
        """Both evaluation splits carry segmentation masks."""
        return all(split in self.splits and self.splits[split].has_masks for split in ("train", "val"))


class TrainingSummary(BaseModel):
    """What the training process returns (``summary.json``): what every run has, plus its last
    logged values (losses, schedules, health figures, budget calibration) as extra fields."""

    model_config = ConfigDict(frozen=True, extra="allow")

    iterations: int  # the run's total (calibrated, with a time budget)
    loop_seconds: float  # this process's iterations, not the setup
    iters_per_epoch: int
    peak_lr: float


class PretrainPlan(_Contract):
    """What the pretrain pipeline is about to train, before it starts: the resolved config, the run
    folder named by its key (config, data, training code, warm-start weights) and its lineage."""

    key: str
    output_dir: str
    config_path: str  # <output_dir>/config.yaml, the resolved config the process reads
    preset: str
    config: dict[str, Any]  # the resolved config as a dict (logged as the run's params)
    lineage: dict[str, str] = {}  # parent_model_version / distilled_from and their weights' sha256
    tuned: dict[str, str] = {}  # tuned.study / tuned.trial when the tuned values were applied

    @property
    def summary_path(self) -> Path:
        return Path(self.output_dir) / "summary.json"


class PretrainResult(_Contract):
    """The pretrain node's output. A local run has its folder here (``output_dir``, ``config``,
    ``summary``); a run on Kubernetes whose claim is not mounted here has only where its
    checkpoint is and which Job ran (or, after a dry run, would run) it."""

    config_hash: str  # the run key: config, data fingerprint, training code, init weights
    checkpoint: str
    mlflow_run_id: str
    output_dir: str | None = None
    config: str | None = None
    summary: TrainingSummary | None = None
    reused: bool = False  # a finished run of the same key: nothing was trained this time
    dry_run: bool = False
    job: str | None = None
    manifests: str | None = None
    output_root: str | None = None
    # lineage (also tags of the MLflow run and the registered version)
    parent_model_version: str | None = None
    parent_weights_sha256: str | None = None
    distilled_from: str | None = None
    teacher_weights_sha256: str | None = None

    @property
    def is_local(self) -> bool:
        return self.output_dir is not None

    def lineage(self) -> dict[str, str]:
        """The lineage fields this run has, as tags."""
        names = ("parent_model_version", "parent_weights_sha256", "distilled_from", "teacher_weights_sha256")
        return {name: str(getattr(self, name)) for name in names if getattr(self, name) is not None}
