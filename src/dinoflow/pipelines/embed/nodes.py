"""Embed a folder: the project's ingestion and validation nodes on it, then every valid image
through a registered version's image embedder (``registry.embedder``) into a Parquet file and a
nearest-neighbour index (``curation.folder_index``). The embedder and the index (torch, faiss)
are imported when the node runs: ``kedro run`` imports every node."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from dinoflow.config.pipeline_params import DataParams, EmbedParams, ValidationParams
from dinoflow.data.manifest import inside


def embed_settings(
    data: DataParams, validation: ValidationParams, embed: EmbedParams
) -> tuple[DataParams, ValidationParams]:
    """The ingestion and validation settings for the folder: the project's rules (sizes, pixel
    checks, quarantine share), with the folder's own ingest cache and data docs, no DVC tracking
    (the folder is not the training data) and no labels (class folders mean nothing to an embedding)."""
    if not embed.source:
        raise ValueError(
            "embed.source is not set: the embed pipeline needs the folder of images to embed, "
            "e.g. kedro run --pipeline embed --params embed.source=/path/to/images"
        )
    folder = {"source": embed.source, "ingest_cache": embed.ingest_cache, "dvc_track": False, "label_depth": 0}
    return data.model_copy(update=folder), validation.model_copy(update={"docs_root": embed.docs_root})


def embed_node(clean_manifest: pd.DataFrame, source: dict[str, Any], embed: EmbedParams) -> dict[str, Any]:
    """Embeddings of every valid image (only those not on disk yet for this model version), then
    the index over all of them. Returns the report (counts, speed, index kind, files)."""
    from dinoflow.curation.folder_index import index_folder
    from dinoflow.registry.embedder import load_embedder

    with tempfile.TemporaryDirectory(prefix="dinoflow-embed-") as tmp:
        model = load_embedder(embed.model, Path(tmp))
    root, paths = Path(source["root"]), clean_manifest["path"].tolist()
    files = [inside(root, p) for p in paths]  # refuses a path leading out of the folder
    return index_folder(root, files, paths, clean_manifest["sha256"].tolist(), model, embed)
