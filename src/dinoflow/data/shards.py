"""Dataset building: decode, square-crop, resize and pack images into tensor shards.

A shard is a ``torch.save`` dict of plain tensors, loadable with ``weights_only=True``::

    images: (N, 3, S, S) uint8    labels: (N,) int64, -1 when unlabelled
    masks:  (N, S, S) uint8, or (0,) when the split has no masks

Training keeps a shard in memory and augments whole batches on the compute device, so the
2-core CPU never waits on per-image decoding.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dinoflow.data.decode import to_rgb


@dataclass(frozen=True)
class ImageRecord:
    """One clean image of a split, as listed by the validated manifest."""

    path: Path
    label: int = -1
    mask_path: Path | None = None


def _center_square(image: Image.Image) -> Image.Image:
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    return image.crop((left, top, left + side, top + side))


def load_image(path: Path, size: int) -> np.ndarray:
    """Decode → EXIF-orient → RGB (``decode.to_rgb``) → centre square → (size, size, 3) uint8 (bicubic)."""
    with Image.open(path) as image:
        rgb = to_rgb(image)
    return np.asarray(_center_square(rgb).resize((size, size), Image.Resampling.BICUBIC))


def load_mask(path: Path, size: int) -> np.ndarray:
    """Decode a class-id mask → centre square → (size, size) uint8 (nearest, ids preserved)."""
    with Image.open(path) as mask:
        return np.asarray(_center_square(mask.convert("L")).resize((size, size), Image.Resampling.NEAREST))


def build_shard(records: Sequence[ImageRecord], size: int) -> dict[str, torch.Tensor]:
    """Pack ``records`` into a shard dict (see module docstring)."""
    images = (
        np.stack([load_image(r.path, size) for r in records]) if records else np.zeros((0, size, size, 3), np.uint8)
    )
    has_masks = bool(records) and all(r.mask_path is not None for r in records)
    masks = np.stack([load_mask(r.mask_path, size) for r in records]) if has_masks else np.zeros((0,), np.uint8)
    return {
        "images": torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(),
        "labels": torch.tensor([r.label for r in records], dtype=torch.int64),
        "masks": torch.from_numpy(masks),
    }


def save_shard(shard: dict[str, torch.Tensor], path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(shard, tmp)
    tmp.replace(path)  # atomic: a reader never sees half a shard
    return path


def load_shard(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)


def dataset_fingerprint(rows: Iterable[Sequence[str]]) -> str:
    """sha256 over sorted (path, sha256, label, split) rows: names the exact data content."""
    digest = hashlib.sha256()
    for row in sorted(tuple(str(v) for v in r) for r in rows):
        digest.update(("\t".join(row) + "\n").encode())
    return digest.hexdigest()


def build_dataset(
    records: Mapping[str, Sequence[ImageRecord]],
    classes: Sequence[str],
    size: int,
    out_dir: Path,
    fingerprint_rows: Iterable[Sequence[str]],
) -> dict:
    """Write one shard per split (``<out_dir>/<split>.pt``) and return the dataset index.

    Shards are rebuilt only when the content fingerprint or image size changed.
    """
    out_dir = Path(out_dir)
    fingerprint = dataset_fingerprint(fingerprint_rows)
    index_path = out_dir / "index.json"
    if index_path.exists():
        previous = json.loads(index_path.read_text())
        if previous.get("fingerprint") == fingerprint and previous.get("image_size") == size:
            return previous
    shards = {}
    for split, split_records in sorted(records.items()):
        shards[split] = str(save_shard(build_shard(split_records, size), out_dir / f"{split}.pt"))
    index = {
        "fingerprint": fingerprint,
        "image_size": size,
        "classes": list(classes),
        "shards": shards,
        "counts": {split: len(r) for split, r in sorted(records.items())},
        "has_masks": {split: all(x.mask_path is not None for x in r) for split, r in sorted(records.items())},
    }
    index_path.write_text(json.dumps(index, indent=2) + "\n")
    return index
