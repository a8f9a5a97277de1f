"""Nearest images of a folder embedded by ``kedro run --pipeline embed``:

    python -m dinoflow.search --index data/07_model_output/embed --image query.png -k 5

The query is embedded by the model version that embedded the folder (pinned in ``index.json``,
not the alias, which may have moved), with its preprocessing. Uses ``MLFLOW_TRACKING_URI``
(default: the project's ``sqlite:///mlflow.db``). Prints one line per neighbour: rank,
cosine similarity, path.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import pyarrow.parquet as pq
from mlflow.exceptions import MlflowException

from dinoflow.curation.search_index import load_index, nearest
from dinoflow.registry.embedder import load_embedder
from dinoflow.tracking.mlflow_run import tracking_uri


def search(index_dir: Path, images: list[Path], k: int) -> list[list[dict[str, Any]]]:
    """For each query image, its k nearest catalogue images: ``{"path", "similarity"}``, most similar first."""
    index, description = load_index(index_dir)
    with tempfile.TemporaryDirectory(prefix="dinoflow-search-") as tmp:
        model = load_embedder(description["model_version"], Path(tmp))
    similarity, rows = nearest(index, model.embed_files(images), k)
    paths = pq.read_table(Path(index_dir) / description["embeddings"], columns=["path"]).column("path").to_pylist()
    root = Path(description["root"])
    return [
        [{"path": str(root / paths[r]), "similarity": float(s)} for s, r in zip(sims, found, strict=True) if r >= 0]
        for sims, found in zip(similarity, rows, strict=True)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dinoflow.search", description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, default=Path("data/07_model_output/embed"),
                        help="the embed pipeline's output folder (embed.output_dir)")  # fmt: skip
    parser.add_argument("--image", type=Path, nargs="+", required=True, help="query image file(s)")
    parser.add_argument("-k", type=int, default=5, help="neighbours per query (default 5)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of lines")
    args = parser.parse_args(argv)
    if args.k < 1:
        parser.error(f"-k must be at least 1, got {args.k}")
    missing = [str(image) for image in args.image if not image.is_file()]
    if missing:
        parser.error(f"no such query image file: {', '.join(missing)}")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # stdout is the answer; no download bars
    mlflow.set_tracking_uri(tracking_uri(Path.cwd()))
    try:
        found = search(args.index, args.image, args.k)
    except (FileNotFoundError, LookupError, MlflowException) as err:  # a missing index, model or unreadable query
        print(f"error: {err}", file=sys.stderr)  # noqa: T201
        return 2
    if args.json:
        print(json.dumps([{"query": str(q), "neighbours": n} for q, n in zip(args.image, found, strict=True)]))  # noqa: T201
        return 0
    for query, neighbours in zip(args.image, found, strict=True):
        print(f"# {query}")  # noqa: T201
        for rank, hit in enumerate(neighbours, 1):
            print(f"{rank}\t{hit['similarity']:.4f}\t{hit['path']}")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
