"""A registered version as the image embedder it serves (``image_model.ImageEmbedder``): the same
backbone, preprocessing and fp32 forward as ``mlflow models serve``, for batch embedding
(the ``embed`` pipeline) and search queries (``python -m dinoflow.search``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import Model

from dinoflow.eval.features import ImagePreprocessing
from dinoflow.registry import image_model
from dinoflow.registry.mlflow_registry import download_backbone_files, registered_version
from dinoflow.train.builders import load_backbone

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VersionEmbedder:
    """embedder: files or encoded images → (N, D) CLS embeddings; uri: the version pinned,
    ``models:/<name>/<version>`` (an alias may move on, the rows stay this version's)."""

    embedder: image_model.ImageEmbedder
    uri: str

    @property
    def dim(self) -> int:
        return int(self.embedder.backbone.num_features)

    def embed_files(self, files: Sequence[Path]) -> np.ndarray:
        """B image files → (B, D) float32 CLS embeddings (not L2-normalised), as served."""
        return self.embedder.predict(pd.DataFrame({image_model.PATH: [str(f) for f in files]}))


def load_embedder(uri: str, destination: Path) -> VersionEmbedder:
    """``models:/<name>@<alias>`` or ``models:/<name>/<version>`` → its image embedder, loaded from
    the image-in model's data (``config.yaml``, weights, ``preprocessing.json``) downloaded to
    ``destination`` exactly as the serving flavour loads it. A version registered before the
    image-in flavour existed is rebuilt from its ``backbone_files/`` with the preprocessing
    ``register_backbone`` assumes when none is given (the evaluation size as the stored size)."""
    version = registered_version(uri)
    pinned = f"models:/{version.name}/{version.version}"
    try:
        mlmodel = mlflow.artifacts.download_artifacts(artifact_uri=f"{pinned}/MLmodel", dst_path=str(destination))
        data = Model.load(mlmodel).flavors["python_function"]["data"]
        folder = mlflow.artifacts.download_artifacts(artifact_uri=f"{pinned}/{data}", dst_path=str(destination))
    except (MlflowException, KeyError):
        log.warning("%s has no image-in model data; rebuilt from its backbone_files/ at its evaluation size", pinned)
        backbone, cfg = load_backbone(download_backbone_files(version, destination))
        size = cfg.crops.global_size
        return VersionEmbedder(image_model.ImageEmbedder(backbone, ImagePreprocessing(size, size)), pinned)
    # The flavour's own loader (MLflow's loader_module entry point): what `mlflow models serve` runs.
    return VersionEmbedder(image_model.load_embedder(folder), pinned)
