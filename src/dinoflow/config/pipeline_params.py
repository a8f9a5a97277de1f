"""Typed parameters of the Kedro pipelines.

Nodes annotate their ``params:`` inputs with these models; Kedro validates every one of them
before the first node runs, so a typo (``data.sourse``) or a wrong type stops the run at once
with an error naming the key. The pretraining config has its own schema (``schema.py``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SyntheticParams(_Params):
    num_classes: int = Field(ge=2)
    train_per_class: int = Field(ge=1)
    val_per_class: int = Field(ge=1)
    image_size: int = Field(ge=16)
    clutter_strokes: int = Field(ge=0)
    texture_strength: float = Field(ge=0.0, le=1.0)
    background_noise: float = Field(ge=0.0)
    seed: int


class DataParams(_Params):
    source: str
    synthetic_dir: str
    synthetic: SyntheticParams
    val_ratio: float = Field(gt=0.0, lt=1.0)
    min_size: int = Field(ge=1)
    max_pixels: int = Field(ge=1)
    workers: int = Field(ge=0)
    ingest_cache: str  # what the last ingest learnt about each file; unchanged files are not re-read
    dvc_track: bool


class ValidationParams(_Params):
    max_quarantine_share: float = Field(ge=0.0, le=1.0)
    max_class_imbalance: float = Field(ge=1.0)
    docs_root: str


class DatasetParams(_Params):
    max_side: int = Field(ge=8)  # shorter side of a stored image (never enlarged)
    max_aspect: float = Field(default=3.0, ge=1.0)  # longer side is centre-cropped beyond this ratio
    max_shard_mb: float = Field(default=256.0, gt=0.0)
    workers: int = Field(default=0, ge=0)  # shard-writing processes; 0 = one per CPU core
    output_dir: str


class LauncherParams(_Params):
    nproc_per_node: int = Field(ge=1)
    timeout_s: float = Field(gt=0)
    output_root: str


class EvaluateParams(_Params):
    knn_k: int = Field(ge=1)
    knn_ks: list[int] = Field(min_length=1)
    linear_epochs: int = Field(ge=1)
    segmentation_epochs: int = Field(ge=1)
    pictures: int = Field(ge=0)  # validation images shown in the attention / PCA figures
    pictures_dir: str
    knn_temperature: float = Field(gt=0.0)
    batch_size: int = Field(ge=1)


class RegisterParams(_Params):
    model_name: str = Field(min_length=1)
    alias: str = Field(min_length=1)


class Gates(_Params):
    """When a challenger may replace the champion (``promote.gates``)."""

    max_knn_drop: float = Field(ge=0.0)  # challenger k-NN top-1 may trail the champion's by at most this
    max_seg_drop: float = Field(ge=0.0)  # same for segmentation mIoU (when the data has masks)
    require_validation_passed: bool  # the challenger's training data passed the GX suites
    forbid_collapse: bool  # no collapse flag at the end of the challenger's training
    first_min_gain_over_random_init: float  # no champion yet: k-NN gain over the same net at init


class PromoteParams(_Params):
    gates: Gates


class SearchDimension(_Params):
    """One tuned training-config key: a float range (``log`` for scale-free ranges) or an int range."""

    low: float
    high: float
    log: bool = False
    int: bool = False


class TuneParams(_Params):
    study_name: str = Field(min_length=1)
    storage: str  # SQLAlchemy URL; ${oc.env:...} or credentials for a team database
    n_trials: int = Field(ge=1)  # in total, over all workers
    workers: int = Field(ge=1)  # processes sharing the study (pods on a cluster)
    timeout_s: float = Field(gt=0)
    seed: int
    pruner: Literal["median", "hyperband", "none"]
    prune_after_epochs: int = Field(default=1, ge=0)  # no pruning on earlier probes (they are mostly noise)
    probe_images: int = Field(ge=10)  # train and val images of the online k-NN (each)
    proxy: dict[str, Any]  # training-config overrides of the short proxy run (dotted keys)
    space: dict[str, SearchDimension] = Field(min_length=1)  # dotted training-config keys
    plots_dir: str


class TunedParams(_Params):
    """``pretrain_tuned``: the one switch that applies the last study's best values to ``pretrain``."""

    use: bool
    file: str
