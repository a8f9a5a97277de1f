"""Typed parameters of the Kedro pipelines.

Nodes annotate their ``params:`` inputs with these models; Kedro validates every one of them
before the first node runs, so a typo (``data.sourse``) or a wrong type stops the run at once
with an error naming the key. The pretraining config has its own schema (``schema.py``).
"""

from __future__ import annotations

import itertools
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from dinoflow.data.decode import parse_background


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SyntheticParams(_Params):
    num_classes: int = Field(ge=2, description="shape classes")
    train_per_class: int = Field(ge=1, description="train images per class")
    val_per_class: int = Field(ge=1, description="val images per class")
    image_size: int = Field(ge=16, description="side in px")
    clutter_strokes: int = Field(ge=0, description="random line segments under the object")
    texture_strength: float = Field(ge=0.0, le=1.0, description="stripes/noise on the object colour")
    background_noise: float = Field(ge=0.0, description="per-pixel noise on the background")
    min_contrast: float = Field(
        default=0.0, ge=0.0, le=0.5, description="rgb colours: least luminance gap object vs background"
    )
    min_scale: float = Field(default=0.2, ge=0.05, le=0.5, description="object half-size / image side, lower bound")
    max_scale: float = Field(default=0.45, ge=0.05, le=0.5, description="object half-size / image side, upper bound")
    position_jitter: float = Field(default=1.0, ge=0.0, le=1.0, description="share of the free room the centre may use")
    light_objects: bool = Field(
        default=False, description="the object is lighter than its background (hues stay random)"
    )
    shapes: Literal["outlines", "parts"] = Field(
        default="outlines", description="class set: plain silhouettes, or round ones told apart by their parts"
    )
    colours: Literal["rgb", "hue"] = Field(
        default="rgb", description="uniform RGB colours, or random hues with the object lighter than its background"
    )
    seed: int = Field(description="generator / sampler seed")


class DataParams(_Params):
    source: str = Field(description="synthetic, or a folder of images")
    synthetic_dir: str = Field(description="where the embedded generator writes")
    synthetic: SyntheticParams
    val_ratio: float = Field(gt=0.0, lt=1.0, description="val share for folders without train/ and val/")
    min_size: int = Field(ge=1, description="smaller images are quarantined (px)")
    max_pixels: int = Field(ge=1, description="larger images are quarantined unread (decompression bombs)")
    workers: int = Field(ge=0, description="processes; 0 = one per core")
    ingest_cache: str = Field(
        description="what the last ingest learnt about each file; unchanged files are not re-read"
    )
    dvc_track: bool = Field(description="dvc add the source when inside this repository")
    alpha_background: str = Field(
        default="white", description="transparency is composited on this: white, black or R,G,B (0-255 each)"
    )
    min_pixel_std: float = Field(
        default=2.0, ge=0.0, le=255.0, description="near-uniform below this pixel std (0-255); 0 = off"
    )
    label_depth: int | None = Field(
        default=None, ge=0, description="folder levels that make the label; null = all, 0 = none"
    )

    @field_validator("alpha_background")
    @classmethod
    def _known_background(cls, value: str) -> str:
        parse_background(value)  # raises a ValueError naming the accepted forms
        return value


class ValidationParams(_Params):
    max_quarantine_share: float = Field(ge=0.0, le=1.0, description="the run stops above this share of bad files")
    max_class_imbalance: float = Field(ge=1.0, description="largest / smallest class size allowed")
    docs_root: str = Field(description="Great Expectations context and data docs")


class DatasetParams(_Params):
    max_side: int = Field(ge=8, description="shorter side of a stored image (never enlarged)")
    max_aspect: float = Field(default=3.0, ge=1.0, description="longer side is centre-cropped beyond this ratio")
    max_shard_mb: float = Field(default=256.0, gt=0.0, description="decoded pixels per shard file")
    workers: int = Field(default=0, ge=0, description="shard-writing processes; 0 = one per CPU core")
    output_dir: str = Field(description="shards + index.json")


class CurationSamplingParams(_Params):
    """Balanced sampling by hierarchical k-means (``curation.sampling``)."""

    levels: list[int] = Field(min_length=1, description="clusters per level, finest first, e.g. [64, 8]")
    target_share: float | None = Field(
        default=None, gt=0, le=1, description="share of train images kept; null: no sampling"
    )
    target_size: int | None = Field(default=None, ge=1, description="training images kept (wins over target_share)")
    kmeans_iterations: int = Field(default=20, ge=1, description="Lloyd iterations per level")
    seed: int = Field(default=0, description="k-means initialisation and the draw inside clusters")

    @field_validator("levels")
    @classmethod
    def _coarser_upwards(cls, levels: list[int]) -> list[int]:
        for finer, coarser in itertools.pairwise(levels):
            if coarser > finer or coarser < 1:
                raise ValueError(f"each level must have between 1 and as many clusters as the level below: {levels}")
        return levels


class CurationParams(_Params):
    enabled: bool = Field(description="false: the validated manifest goes to the dataset node unchanged")
    embedding: str = Field(
        default="pixels",
        description="pixels, or a registered backbone: models:/<name>@<alias> or models:/<name>/<version>",
    )
    eval_size: int = Field(
        default=32, ge=8, description="side (px) of the evaluation view every image is embedded from"
    )
    thumbnail: int = Field(default=8, ge=4, description="pixels embedding: side of the thumbnail")
    colour: bool = Field(
        default=True, description="pixels embedding: RGB channels; false: grey (for whitening grey photos)"
    )
    whitening: float | None = Field(
        default=None, gt=0, le=1, description="PCA-whiten the embeddings with this shrinkage; null: off"
    )
    crop_tolerance: float = Field(
        default=0.06, ge=0.0, le=0.25, description="pixels: side share a copy may lose to a crop"
    )
    duplicate_threshold: float = Field(
        default=0.97, ge=-1.0, le=1.0, description="cosine at or above which images are copies"
    )
    neighbours: int = Field(default=16, ge=1, description="k of the k-NN graph the copies are found on")
    decontamination_threshold: float = Field(
        default=0.97, ge=-1.0, le=1.0, description="train images this close to a val one go"
    )
    warn_removed_share: float = Field(
        default=0.25, ge=0.0, le=1.0, description="warn when near-duplicates are more of the training images"
    )
    sampling: CurationSamplingParams = Field(description="balanced sampling; no target: off")
    pictures: int = Field(default=8, ge=0, description="duplicate groups and clusters shown in the pictures")
    workers: int = Field(default=0, ge=0, description="decoding processes; 0 = one per CPU core")

    @field_validator("embedding")
    @classmethod
    def _known_embedding(cls, value: str) -> str:
        if value != "pixels" and not value.startswith("models:/"):
            raise ValueError(f"curation.embedding must be 'pixels' or 'models:/<name>@<alias>', got {value!r}")
        return value


class EmbedParams(_Params):
    """``kedro run --pipeline embed``: a folder → embeddings (Parquet) + a nearest-neighbour index."""

    source: str | None = Field(
        default=None, description="the folder of images to embed (required: --params embed.source=/path/to/images)"
    )
    model: str = Field(
        default="models:/dinoflow-backbone@champion",
        description="registered version: models:/<name>@<alias> or .../<version>",
    )
    output_dir: str = Field(
        description="embeddings.parquet, index.faiss, index.json: what python -m dinoflow.search --index reads"
    )
    batch_size: int = Field(default=64, ge=1, description="images per forward pass")
    flush_every: int = Field(
        default=16, ge=1, description="batches per chunk saved: a killed run loses at most one chunk"
    )
    index: Literal["auto", "exact", "ivf"] = Field(
        default="auto", description="auto: exact (IndexFlatIP) up to N x D = 5e7, IVF beyond"
    )
    ingest_cache: str = Field(description="the folder's own ingest cache (the training data's cache stays as it is)")
    docs_root: str = Field(description="the folder's Great Expectations context and data docs")

    @field_validator("model")
    @classmethod
    def _registered(cls, value: str) -> str:
        if not value.startswith("models:/"):
            raise ValueError(f"embed.model must be models:/<name>@<alias> or models:/<name>/<version>, got {value!r}")
        return value


class KubernetesParams(_Params):
    """Where and how big a training Job is when ``pretrain_launcher.kind`` is ``kubernetes``."""

    namespace: str = Field(default="default", description="where the Job, its Service and its ConfigMap are created")
    context: str | None = Field(
        default=None, description="kubeconfig context; inside a pod its service account is used"
    )
    image: str = Field(default="dinoflow:latest", description="training image (see Dockerfile)")
    nodes: int = Field(default=2, ge=1, description="pods, one torchrun agent each")
    gpus_per_node: int = Field(
        default=0, ge=0, description="nvidia.com/gpu per pod; >0 also sets the processes per pod"
    )
    cpu: str = Field(default="4", description="CPU request = limit per pod")
    memory: str = Field(default="16Gi", description="memory request = limit per pod")
    data_claim: str = Field(
        default="dinoflow-data", description="PersistentVolumeClaim holding the dataset shards (mounted at /data)"
    )
    dataset_path: str = Field(default="/data/dataset", description="the dataset directory as the pods see it")
    checkpoints_claim: str = Field(
        default="dinoflow-checkpoints", description="shared claim for checkpoints (mounted at /checkpoints)"
    )
    tracking_uri: str | None = Field(
        default=None, description="MLflow as the pods reach it; default: the pipeline's, if a server"
    )
    tracking_secret: str = Field(
        default="dinoflow-tracking", description="Secret with MLflow username/password keys (by reference)"
    )
    max_restarts: int = Field(default=3, ge=0, description="torchrun group restarts before the pod fails")
    dry_run: bool = Field(default=False, description="write the manifests under manifests_dir and submit nothing")
    manifests_dir: str = Field(default="data/06_models/k8s", description="where rendered manifests are written")
    poll_s: float = Field(default=5.0, gt=0.0, description="seconds between status polls")


class LauncherParams(_Params):
    kind: Literal["local", "kubernetes"] = Field(
        default="local", description="run torchrun here, or submit a Job to a cluster"
    )
    nproc_per_node: int = Field(ge=1, description=">1 runs torchrun with that many processes")
    timeout_s: float = Field(gt=0, description="wall-clock limit")
    output_root: str = Field(description="one folder per (config, data, code)")
    system_metrics_interval_s: float = Field(
        default=10.0, ge=0.0, description="seconds between system/ samples; 0 = off"
    )
    kubernetes: KubernetesParams = Field(default=KubernetesParams(), description="used when kind is kubernetes")


class EvaluateParams(_Params):
    knn_k: int = Field(ge=1, description="k of the headline knn_top1")
    knn_ks: list[int] = Field(min_length=1, description="also reported as knn_top1_k<k>")
    linear_epochs: int = Field(ge=1, description="epochs of the linear-probe grid")
    segmentation_epochs: int = Field(ge=1, description="epochs of the segmentation probe")
    segmentation_lr: float = Field(gt=0.0, description="peak AdamW learning rate of the segmentation probe")
    pictures: int = Field(ge=0, description="validation images shown in the attention / PCA figures")
    knn_temperature: float = Field(gt=0.0, description="vote weight exp(sim / T)")
    batch_size: int = Field(ge=1, description="feature-extraction batch")


class RegisterParams(_Params):
    model_name: str = Field(min_length=1, description="registered model name")
    alias: str = Field(min_length=1, description="alias of a new version")
    attempts: int = Field(
        default=3, ge=1, description="tries to reach the registry and upload the model before giving up"
    )
    retry_wait_s: float = Field(
        default=5.0, ge=0.0, description="wait before the second try; doubled before each next one"
    )


class Gates(_Params):
    """When a challenger may replace the champion (``promote.gates``)."""

    max_knn_drop: float = Field(ge=0.0, description="challenger k-NN top-1 may trail the champion's by at most this")
    max_seg_drop: float = Field(ge=0.0, description="same for segmentation mIoU (when the data has masks)")
    require_validation_passed: bool = Field(description="the challenger's training data passed the GX suites")
    forbid_collapse: bool = Field(description="no collapse flag at the end of the challenger's training")
    first_min_gain_over_random_init: float = Field(description="no champion yet: k-NN gain over the same net at init")
    min_gain_over_raw_pixels: float | None = Field(
        default=None, description="k-NN gain over standardised raw pixels (null: no such gate)"
    )
    allow_label_set_change: bool = Field(
        default=False, description="promote over a champion trained for other class names (another domain)"
    )
    min_share_of_teacher_knn: float | None = Field(
        default=None, gt=0.0, description="distilled: student / teacher k-NN top-1"
    )


class PromoteParams(_Params):
    gates: Gates


class SearchDimension(_Params):
    """One tuned training-config key: a float range (``log`` for scale-free ranges) or an int range."""

    low: float
    high: float
    log: bool = False
    int: bool = False


class TuneParams(_Params):
    study_name: str = Field(min_length=1, description="Optuna study (a rerun continues it)")
    storage: str = Field(description="SQLAlchemy URL; ${oc.env:...} or credentials for a team database")
    n_trials: int = Field(ge=1, description="in total, over all workers")
    workers: int = Field(ge=1, description="processes sharing the study (pods on a cluster)")
    timeout_s: float = Field(gt=0, description="wall-clock limit")
    seed: int = Field(description="generator / sampler seed")
    pruner: Literal["median", "hyperband", "none"] = Field(description="median, hyperband or none")
    prune_after_epochs: int = Field(default=1, ge=0, description="no pruning on earlier probes (they are mostly noise)")
    probe_images: int = Field(ge=10, description="train and val images of the online k-NN (each)")
    proxy: dict[str, Any] = Field(description="training-config overrides of the short proxy run (dotted keys)")
    space: dict[str, SearchDimension] = Field(min_length=1, description="dotted training-config keys")


class TunedParams(_Params):
    """``pretrain_tuned``: the one switch that applies the last study's best values to ``pretrain``."""

    use: bool = Field(description="apply the best values of the last study (the catalog's tuned_pretrain)")
