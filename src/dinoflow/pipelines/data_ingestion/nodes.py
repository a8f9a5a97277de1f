"""Data ingestion: materialise the source (embedded generator or a folder), version it, list it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from dinoflow.config.pipeline_params import DataParams
from dinoflow.data.decode import parse_background
from dinoflow.data.manifest import build_manifest, is_duplicate
from dinoflow.data.synthetic import SyntheticSpec, generate
from dinoflow.versioning import dvc

log = logging.getLogger(__name__)


def materialize_source(data: DataParams) -> dict[str, Any]:
    """Generate the embedded dataset or check the user's folder; ``dvc add`` it when asked.

    Returns:
        ``{"kind", "root", ...}`` plus the DVC hash when tracked.
    """
    if data.source == "synthetic":
        root = Path(data.synthetic_dir)
        stamp = generate(SyntheticSpec(**data.synthetic.model_dump()), root, data.workers)
        source = {"kind": "synthetic", "root": str(root), "generator": stamp["fingerprint"]}
    else:
        root = Path(data.source).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"data.source: {root} is not a directory (or use 'synthetic')")
        source = {"kind": "folder", "root": str(root)}
    if data.dvc_track:
        source.update(dvc.track(root))
    return source


def build_manifest_node(source: dict[str, Any], data: DataParams) -> pd.DataFrame:
    """One row per image file with hash, size, mode, label, split and status."""
    manifest = pd.DataFrame(
        build_manifest(
            Path(source["root"]),
            data.val_ratio,
            data.min_size,
            data.max_pixels,
            data.workers,
            cache_path=Path(data.ingest_cache),
            min_pixel_std=data.min_pixel_std,
            background=parse_background(data.alpha_background),
            label_depth=data.label_depth,
        )
    )
    duplicates = int(manifest["status"].map(is_duplicate).sum())
    ok = int((manifest["status"] == "ok").sum())
    log.info(
        "manifest: %d files, %d ok, %d exact duplicate(s) dropped, %d quarantined",
        len(manifest), ok, duplicates, len(manifest) - ok - duplicates,
    )  # fmt: skip
    return manifest
