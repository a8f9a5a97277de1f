"""A folder's embeddings in one Parquet file, computed so that an interrupted run loses at most one
chunk and a rerun computes only what is missing.

Layout of the output folder:

- ``embeddings.parquet``: one row per valid image, in manifest order: ``path`` (relative to the
  folder embedded), ``sha256`` (of the file), ``model_version`` (``models:/<name>/<version>``),
  ``embedding`` (fixed-size list of D float32: the model's output, not L2-normalised).
- ``embeddings.parts/part-NNNNNN.parquet``: the rows computed by a run still going (or killed),
  one file per chunk of ``flush_every`` batches, each written atomically (``dinoflow.atomic``).

A row is reused when its (model version, sha256) pair is in the file or a part: the key is the
content, so a renamed or moved file is not embedded again, and another model version recomputes
everything. The complete file replaces the old one atomically, then the parts are removed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from dinoflow.atomic import atomic_path

EMBEDDINGS_FILE, PARTS_DIR = "embeddings.parquet", "embeddings.parts"
COLUMNS = ("path", "sha256", "model_version", "embedding")
Embed = Callable[[list[Path]], np.ndarray]  # B image files → (B, D) float32


@dataclass(frozen=True)
class Embedded:
    """What ``update_embeddings`` made.

    vectors: (N, D) float32, row i the embedding of manifest row i.
    computed: images embedded by this run; reused: taken from the file or from a killed run's parts.
    """

    vectors: np.ndarray
    computed: int
    reused: int


def table(paths: Sequence[str], sha256: Sequence[str], model_version: str, vectors: np.ndarray) -> pa.Table:
    """Rows of ``embeddings.parquet``; vectors: (N, D) → the ``embedding`` column, list<float32>[D]."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    flat = pa.array(vectors.reshape(-1), type=pa.float32())
    return pa.table({
        "path": pa.array(list(paths), pa.string()),
        "sha256": pa.array(list(sha256), pa.string()),
        "model_version": pa.array([model_version] * len(vectors), pa.string()),
        "embedding": pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1]),
    })  # fmt: skip


def vectors_of(rows: pa.Table, dim: int) -> np.ndarray:
    """The ``embedding`` column of ``rows`` → (N, dim) float32."""
    column = rows.column("embedding").combine_chunks()
    return column.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim).astype(np.float32, copy=False)


def read_embeddings(file: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """``embeddings.parquet`` → (its path, sha256 and model_version columns; (N, D) embeddings)."""
    rows = pq.read_table(file)
    return rows.drop(["embedding"]).to_pandas(), vectors_of(rows, rows.schema.field("embedding").type.list_size)


def stored(folder: Path, model_version: str, dim: int) -> tuple[pd.Index, np.ndarray]:
    """The rows of ``model_version`` already on disk (file and parts; debris of a killed write,
    ``*.tmp``, is never read): (sha256 index, (M, dim) vectors), one row per sha256."""
    files = [folder / EMBEDDINGS_FILE, *sorted((folder / PARTS_DIR).glob("part-*.parquet"))]
    parts = [pq.read_table(f, columns=["sha256", "model_version", "embedding"]) for f in files if f.is_file()]
    parts = [p.filter(pc.equal(p.column("model_version"), model_version)) for p in parts]
    parts = [p for p in parts if p.num_rows and p.schema.field("embedding").type.list_size == dim]
    if not parts:
        return pd.Index([], dtype=object), np.zeros((0, dim), np.float32)
    rows = pa.concat_tables(parts)
    sha = pd.Index(rows.column("sha256").to_pylist())
    first = ~sha.duplicated()  # a row written twice (a part kept after the file was rewritten)
    return sha[first], vectors_of(rows, dim)[first]


def update_embeddings(
    folder: Path,
    files: Sequence[Path],
    paths: Sequence[str],
    sha256: Sequence[str],
    model_version: str,
    embed: Embed,
    dim: int,
    batch_size: int = 64,
    flush_every: int = 16,
    progress: bool = False,
) -> Embedded:
    """Bring ``folder/embeddings.parquet`` up to date with a manifest, embedding only the images
    whose (model version, sha256) is not on disk yet.

    Args:
        files: N image files to read; paths: the same N as recorded (relative to the folder
            embedded); sha256: their content hashes (unique: ingestion drops exact duplicates).
        embed: B files → (B, dim) float32, called with ``batch_size`` files at a time.
        flush_every: batches per part file; a run killed loses at most this many batches.
    """
    folder = Path(folder)
    known, known_vectors = stored(folder, model_version, dim)
    where = known.get_indexer(pd.Index(list(sha256)))
    todo = np.flatnonzero(where < 0)
    vectors = np.zeros((len(files), dim), np.float32)
    vectors[where >= 0] = known_vectors[where[where >= 0]]
    parts = folder / PARTS_DIR
    number = len(list(parts.glob("part-*.parquet")))  # parts of a killed run stay until the file is written
    chunk: list[int] = []
    bar = tqdm(total=len(todo), desc=f"embed ({model_version})", unit="img", disable=not progress, mininterval=1.0)
    for start in range(0, len(todo), batch_size):
        batch = todo[start : start + batch_size].tolist()
        vectors[batch] = embed([files[i] for i in batch])
        chunk += batch
        bar.update(len(batch))
        if len(chunk) >= flush_every * batch_size:  # the last, shorter chunk goes straight into the file
            while (parts / f"part-{number:06d}.parquet").exists():
                number += 1
            with atomic_path(parts / f"part-{number:06d}.parquet", "embeddings chunk") as tmp:
                pq.write_table(table([paths[i] for i in chunk], [sha256[i] for i in chunk], model_version,
                                     vectors[chunk]), tmp)  # fmt: skip
            chunk = []
    bar.close()
    with atomic_path(folder / EMBEDDINGS_FILE, "embeddings") as tmp:
        pq.write_table(table(paths, sha256, model_version, vectors), tmp)
    if parts.is_dir():  # every part is in the file now (or was of another model or folder), debris too
        for leftover in parts.glob("part-*"):
            leftover.unlink()
        parts.rmdir()
    return Embedded(vectors, computed=len(todo), reused=len(files) - len(todo))
