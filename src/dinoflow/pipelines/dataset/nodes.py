"""Dataset building: pack the clean images of each split into tensor shards (``dinoflow.data.shards``,
imported when the node runs: ``kedro run`` imports every node, and the shards need torch)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from dinoflow.config.pipeline_params import DataParams, DatasetParams
from dinoflow.contracts import DatasetIndex
from dinoflow.data.decode import parse_background
from dinoflow.data.manifest import inside

if TYPE_CHECKING:
    from dinoflow.data.shards import ImageRecord


def build_dataset_node(
    clean_manifest: pd.DataFrame, source: dict[str, Any], dataset: DatasetParams, data: DataParams
) -> DatasetIndex:
    """Returns the dataset index: per split its shards and counts, the classes, the settings, the fingerprint.

    Transparency is composited on ``data.alpha_background``, as the manifest's notes say."""
    from dinoflow.data.shards import build_dataset

    classes = sorted(label for label in clean_manifest["label"].unique() if label)
    records = _image_records(clean_manifest, Path(source["root"]), classes)
    fingerprint_rows = clean_manifest[["path", "sha256", "label", "split"]].itertuples(index=False)
    return DatasetIndex.model_validate(
        build_dataset(
            records,
            classes,
            Path(dataset.output_dir),
            fingerprint_rows,
            max_side=dataset.max_side,
            max_aspect=dataset.max_aspect,
            max_shard_mb=dataset.max_shard_mb,
            workers=dataset.workers,
            background=parse_background(data.alpha_background),
        )
    )


def _image_records(manifest: pd.DataFrame, root: Path, classes: list[str]) -> dict[str, list[ImageRecord]]:
    """Per split, what the shard writer reads of each clean row (label -1: unlabelled)."""
    from dinoflow.data.shards import ImageRecord  # noqa: F811

    return {
        split: [
            ImageRecord(
                path=inside(root, row.path),
                label=classes.index(row.label) if row.label else -1,
                mask_path=inside(root, row.mask_path) if row.mask_path else None,
                width=int(row.width),
                height=int(row.height),
                sha256=row.sha256,
            )
            for row in rows.itertuples()
        ]
        for split, rows in manifest.groupby("split")
    }
