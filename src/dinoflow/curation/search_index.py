"""A nearest-neighbour index over a catalogue of embeddings (the ``embed`` pipeline writes it,
``python -m dinoflow.search`` reads it): cosine similarity as the inner product of unit rows.

Which index (``index_kind``): an exact ``IndexFlatIP`` costs N·D multiply-adds per query and
nothing to build; an IVF index (``duplicates.build_index``: sqrt(N) lists, 16 probed) costs about
16·sqrt(N)·D + sqrt(N)·D per query, but a k-means training and an assignment pass of N·sqrt(N)·D
to build, and it can miss a true neighbour in an unprobed list. Exact is kept while one query
stays under ``EXACT_MACS_PER_QUERY`` (5·10^7 multiply-adds: a few milliseconds on one core;
N = 390,000 vectors at D = 128, 65,000 at D = 768); beyond, IVF (at N = 1M, D = 128: about 60x
fewer multiply-adds per query). ``benchmarks/embed.py`` measures build and query times vs N.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import faiss
import numpy as np

from dinoflow.atomic import atomic_path
from dinoflow.curation.duplicates import build_index

EXACT_MACS_PER_QUERY = 5 * 10**7  # N·D multiply-adds of one exact query; beyond, an IVF index
INDEX_FILE, DESCRIPTION_FILE = "index.faiss", "index.json"
IndexKind = Literal["auto", "exact", "ivf"]


def index_kind(n: int, dim: int, requested: IndexKind = "auto", exact_macs: int = EXACT_MACS_PER_QUERY) -> str:
    """``"exact"`` or ``"ivf"``: the requested kind, or for ``"auto"`` exact while N·D <= ``exact_macs``.
    An IVF index needs vectors to train on: with none, the index is exact whatever was asked."""
    if n == 0 or requested == "exact":
        return "exact"
    return "ivf" if requested == "ivf" or n * dim > exact_macs else "exact"


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """(N, D) → (N, D) contiguous float32 copy with rows of unit L2 norm (all-zero rows stay zero)."""
    rows = np.array(vectors, dtype=np.float32, order="C", copy=True)
    faiss.normalize_L2(rows)
    return rows


def build_search_index(vectors: np.ndarray, requested: IndexKind = "auto") -> tuple[faiss.Index, str]:
    """(N, D) embeddings (any norm) → (an inner-product index over their unit rows, row i as id i;
    its kind, ``"exact"`` or ``"ivf"``)."""
    kind = index_kind(len(vectors), vectors.shape[1], requested)
    return build_index(unit_rows(vectors), exact=kind == "exact"), kind


def nearest(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k most similar catalogue rows of each query.

    Args:
        queries: (Q, D) embeddings (any norm; made unit here, as the catalogue's were).

    Returns:
        ((Q, k') cosine similarities, decreasing; (Q, k') row numbers, -1 where an IVF index found
        fewer), k' = min(k, N).
    """
    k = min(k, index.ntotal)
    if k == 0:
        return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
    similarity, rows = index.search(unit_rows(queries), k)
    return similarity, rows


def save_index(folder: Path, index: faiss.Index, description: dict[str, Any]) -> Path:
    """Write ``index.faiss``, then ``index.json`` (what the rows are, which model made them), each
    atomically: a reader finds the description only once the index it describes is complete."""
    folder = Path(folder)
    with atomic_path(folder / INDEX_FILE, "nearest-neighbour index") as tmp:
        faiss.write_index(index, str(tmp))
    with atomic_path(folder / DESCRIPTION_FILE, "index description") as tmp:
        tmp.write_text(json.dumps(description, indent=2) + "\n")
    return folder / DESCRIPTION_FILE


def load_index(folder: Path) -> tuple[faiss.Index, dict[str, Any]]:
    """The index and its description as ``save_index`` wrote them (an IVF index keeps its nprobe)."""
    folder = Path(folder)
    described = folder / DESCRIPTION_FILE
    if not described.is_file():
        raise FileNotFoundError(
            f"{folder} holds no {DESCRIPTION_FILE}: point --index at the embed pipeline's output folder "
            "(embed.output_dir, e.g. data/07_model_output/embed), written once a run completes"
        )
    return faiss.read_index(str(folder / INDEX_FILE)), json.loads(described.read_text())
