"""Embed a folder: the project's ingestion and validation nodes on it, then every valid image
through a registered version's image embedder (``registry.embedder``) into a Parquet file and a
nearest-neighbour index (``curation.embedding_store``, ``curation.search_index``). The embedder and the index
(torch, faiss) are imported when the node runs: ``kedro run`` imports every node."""

from __future__ import annotations

import dataclasses
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from dinoflow.config.pipeline_params import DataParams, EmbedParams, ValidationParams
from dinoflow.curation.embedding_store import EMBEDDINGS_FILE, update_embeddings
from dinoflow.data.manifest import inside

log = logging.getLogger(__name__)


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
    from dinoflow.curation.search_index import build_search_index, save_index
    from dinoflow.registry.embedder import load_embedder

    root, output = Path(source["root"]), Path(embed.output_dir)
    with tempfile.TemporaryDirectory(prefix="dinoflow-embed-") as tmp:
        model = load_embedder(embed.model, Path(tmp))
    paths, sha256 = clean_manifest["path"].tolist(), clean_manifest["sha256"].tolist()
    log.info("embedding %d valid image(s) of %s with %s (%s)", len(paths), root, embed.model, model.uri)
    started = time.perf_counter()
    result = update_embeddings(output, [inside(root, p) for p in paths], paths, sha256, model.uri, model.embed_files,
                               model.dim, embed.batch_size, embed.flush_every, progress=True)  # fmt: skip
    seconds = time.perf_counter() - started
    index, kind = build_search_index(result.vectors, embed.index)
    description = {
        "model": embed.model, "model_version": model.uri, "root": str(root.resolve()), "embeddings": EMBEDDINGS_FILE,
        "count": len(paths), "dim": model.dim, "index": kind, "similarity": "cosine",
        "preprocessing": dataclasses.asdict(model.embedder.preprocessing),
    }  # fmt: skip
    save_index(output, index, description)
    report = {**description, "computed": result.computed, "reused": result.reused, "embed_seconds": round(seconds, 3),
              "images_per_s": round(result.computed / seconds, 1) if result.computed else None,
              "output_dir": str(output)}  # fmt: skip
    log.info("embedded %d image(s), reused %d from earlier runs; %s index of %d rows in %s",
             result.computed, result.reused, kind, len(paths), output)  # fmt: skip
    return report
