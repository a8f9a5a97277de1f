"""A folder's embeddings and their nearest-neighbour index, side by side in one output folder:
``embeddings.parquet`` (``embedding_store``: only the rows missing for this model version are
computed) and the index over all rows with its description (``search_index``)."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dinoflow.config.pipeline_params import EmbedParams
from dinoflow.curation.embedding_store import EMBEDDINGS_FILE, update_embeddings
from dinoflow.curation.search_index import build_search_index, save_index

log = logging.getLogger(__name__)


def index_folder(
    root: Path, files: Sequence[Path], paths: Sequence[str], sha256: Sequence[str], model, embed: EmbedParams
) -> dict[str, Any]:
    """Embed the image ``files`` (named by ``paths``, relative to ``root``; ``sha256`` of each) with ``model``
    (a registered version's embedder: ``uri``, ``dim``, ``embed_files``, ``embedder.preprocessing``)
    into ``embed.output_dir``, then index them. Returns the report: counts, speed, index kind, files."""
    output = Path(embed.output_dir)
    log.info("embedding %d valid image(s) of %s with %s (%s)", len(paths), root, embed.model, model.uri)
    started = time.perf_counter()
    result = update_embeddings(output, list(files), list(paths), list(sha256), model.uri,
                               model.embed_files, model.dim, embed.batch_size, embed.flush_every, progress=True)  # fmt: skip
    seconds = time.perf_counter() - started
    index, kind = build_search_index(result.vectors, embed.index)
    description = {
        "model": embed.model, "model_version": model.uri, "root": str(root.resolve()), "embeddings": EMBEDDINGS_FILE,
        "count": len(paths), "dim": model.dim, "index": kind, "similarity": "cosine",
        "preprocessing": dataclasses.asdict(model.embedder.preprocessing),
    }  # fmt: skip
    save_index(output, index, description)
    log.info("embedded %d image(s), reused %d from earlier runs; %s index of %d rows in %s",
             result.computed, result.reused, kind, len(paths), output)  # fmt: skip
    return {**description, "computed": result.computed, "reused": result.reused, "embed_seconds": round(seconds, 3),
            "images_per_s": round(result.computed / seconds, 1) if result.computed else None,
            "output_dir": str(output)}  # fmt: skip
