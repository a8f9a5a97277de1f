"""Dataset building: decode each clean image once into packed uint8 shards, and read them back.

A split is a list of shards ``<split>-<k>.pt``. A shard is a ``torch.save`` dict of plain tensors
(loadable with ``weights_only=True``, so opening one never runs code)::

    pixels:  (sum_i 3*h_i*w_i,) uint8   image i is pixels[offsets[i]:offsets[i+1]].view(3, h_i, w_i)
    offsets: (N+1,) int64               shapes: (N, 2) int64 (h_i, w_i)   labels: (N,) int64, -1 unlabelled
    mask_pixels / mask_offsets: the same for (h_i, w_i) class-id masks; empty when the split has none

Why this format: images are stored decoded, so no epoch pays for JPEG decoding again (on a 2-core
CPU that is the bottleneck; see ``benchmarks/multicrop.py``); aspect ratios are kept (shorter side
resized to ``max_side``, longer side cropped to ``max_aspect`` x shorter), so random-resized crops
see the whole photo as DINO's loader does; and ``torch.load(mmap=True)`` opens a shard without
reading it, so each rank and loader worker pages in only the images it uses and all of them share
the OS page cache. Tar files of JPEGs (WebDataset) would decode every epoch; one file per image
means millions of small files; ``.npy`` cannot hold ragged images; LMDB / HDF5 add a dependency
and fork-safety rules for little gain here.

Every shard's size and sha256 are recorded in ``index.json`` when it is written and checked
whenever a split is opened (``ShardReader.from_index``) or an unchanged dataset is reused: a
damaged or truncated shard on shared storage stops the run with its name and how to rebuild it,
instead of being decoded into wrong pixels. Hashing reads each shard once (about 1 GB/s per core).
"""

from __future__ import annotations

import bisect
import hashlib
import io
import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from dinoflow.atomic import atomic_path
from dinoflow.data.decode import WHITE, to_rgb
from dinoflow.parallel import process_map

FORMAT_VERSION = 3  # 3: shard sizes and sha256 in the index
log = logging.getLogger(__name__)


_VERIFIED: set[tuple[str, int, int, str]] = set()  # (path, size, mtime_ns, sha256) of shards hashed here


class CorruptShardError(RuntimeError):
    """A shard differs from what was written: missing, truncated or with damaged bytes."""


class StaleManifestError(ValueError):
    """A file's content no longer matches the sha256 its manifest row lists."""


@dataclass(frozen=True)
class ImageRecord:
    """One clean image of a split, as listed by the validated manifest (width/height before EXIF)."""

    path: Path
    label: int = -1
    mask_path: Path | None = None
    width: int = 0
    height: int = 0
    sha256: str = ""  # of the source file, listed in the dataset's contents.tsv


def stored_shape(width: int, height: int, max_side: int, max_aspect: float) -> tuple[int, int]:
    """(height, width) an image of ``width x height`` gets in a shard: the longer side is first
    centre-cropped to ``max_aspect`` x the shorter, then the shorter side is shrunk to ``max_side``
    (never enlarged)."""
    width, height = _aspect_crop(width, height, max_aspect)
    scale = min(1.0, max_side / min(width, height))
    return max(1, round(height * scale)), max(1, round(width * scale))


def _aspect_crop(width: int, height: int, max_aspect: float) -> tuple[int, int]:
    longest = int(min(width, height) * max_aspect)
    return min(width, longest), min(height, longest)


def _fit(image: Image.Image, max_side: int, max_aspect: float, resample: Image.Resampling) -> Image.Image:
    height, width = stored_shape(image.width, image.height, max_side, max_aspect)
    keep_w, keep_h = _aspect_crop(image.width, image.height, max_aspect)
    left, top = (image.width - keep_w) // 2, (image.height - keep_h) // 2
    image = image.crop((left, top, left + keep_w, top + keep_h))
    return image if image.size == (width, height) else image.resize((width, height), resample)


def load_image(
    path: Path | BinaryIO, max_side: int, max_aspect: float, background: tuple[int, int, int] = WHITE
) -> np.ndarray:
    """Decode (a file, or an open binary stream of its bytes) → EXIF-orient → RGB (``decode.to_rgb``,
    transparency on ``background``) → ``stored_shape`` (bicubic) → (3, h, w) uint8."""
    with Image.open(path) as image:
        rgb = to_rgb(image, background)
    return np.ascontiguousarray(
        np.asarray(_fit(rgb, max_side, max_aspect, Image.Resampling.BICUBIC)).transpose(2, 0, 1)
    )


def load_mask(path: Path, max_side: int, max_aspect: float) -> np.ndarray:
    """Decode a class-id mask → ``stored_shape`` (nearest, ids preserved) → (h, w) uint8."""
    with Image.open(path) as mask:
        return np.asarray(_fit(mask.convert("L"), max_side, max_aspect, Image.Resampling.NEAREST))


def _pack(arrays: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    sizes = [a.size for a in arrays]
    offsets = torch.tensor([0, *np.cumsum(sizes)], dtype=torch.int64) if arrays else torch.zeros(1, dtype=torch.int64)
    pixels = np.concatenate([a.reshape(-1) for a in arrays]) if arrays else np.zeros(0, np.uint8)
    return torch.from_numpy(pixels), offsets


def build_shard(
    records: Sequence[ImageRecord], max_side: int, max_aspect: float = 3.0, background: tuple[int, int, int] = WHITE
) -> dict[str, torch.Tensor]:
    """Decode ``records`` and pack them into a shard dict (see module docstring).

    A record's ``sha256`` (when given) must match its file: the dataset fingerprint is computed
    from the manifest, so a manifest older than the files would name content the shards do not hold.
    """
    images = [load_image(_read_checked(r), max_side, max_aspect, background) for r in records]
    has_masks = bool(records) and all(r.mask_path is not None for r in records)
    masks = [load_mask(r.mask_path, max_side, max_aspect) for r in records] if has_masks else []
    return pack_shard(images, [r.label for r in records], masks)


def _read_checked(record: ImageRecord) -> io.BytesIO:
    """The record's file bytes, read once for both the check and the decode; raises
    ``StaleManifestError`` when they are not the bytes its manifest row hashed."""
    data = record.path.read_bytes()
    if record.sha256 and (found := hashlib.sha256(data).hexdigest()) != record.sha256:
        raise StaleManifestError(
            f"{record.path} has sha256 {found[:16]}… but the manifest the dataset is built from lists "
            f"{record.sha256[:16]}…: the manifest is older than the files (the source changed after "
            "ingestion, validation or curation last ran). Rerun them before the dataset: "
            "`kedro run`, or `kedro run --pipelines data_ingestion,data_validation,curate,dataset`"
        )
    return io.BytesIO(data)


def pack_shard(images: Sequence[np.ndarray], labels: Sequence[int], masks: Sequence[np.ndarray] = ()) -> dict:
    """(3, h_i, w_i) uint8 images, their labels and optional (h_i, w_i) masks → a shard dict."""
    for image, mask in zip(images, masks, strict=False):
        if mask.shape != image.shape[1:]:
            raise ValueError(f"mask and image sizes differ after EXIF orientation: {mask.shape} vs {image.shape[1:]}")
    pixels, offsets = _pack(images)
    mask_pixels, mask_offsets = _pack(masks)
    return {
        "pixels": pixels,
        "offsets": offsets,
        "shapes": torch.tensor([a.shape[1:] for a in images], dtype=torch.int64).reshape(-1, 2),
        "labels": torch.tensor(list(labels), dtype=torch.int64),
        "mask_pixels": mask_pixels,
        "mask_offsets": mask_offsets,
    }


def save_shard(shard: dict[str, torch.Tensor], path: Path) -> Path:
    """Write a shard (raises ``WriteFailedError`` when the disk is full); a reader never sees half of one."""
    with atomic_path(path, "dataset shard") as tmp:
        torch.save(shard, tmp)
    return Path(path)


def load_shard(path: Path, mmap: bool = True) -> dict[str, torch.Tensor]:
    """Open a shard; with ``mmap`` its pixels are read from disk only when touched."""
    return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)


class ShardReader:
    """Random access to the images of one split (all its shards), memory-mapped and opened lazily,
    so a reader can be handed to forked or spawned loader workers."""

    def __init__(self, paths: Sequence[Path], counts: Sequence[int]) -> None:
        self.paths = [Path(p) for p in paths]
        self.starts = [0, *np.cumsum(counts).tolist()]
        self._open: dict[int, dict[str, torch.Tensor]] = {}

    @classmethod
    def from_index(cls, dataset_dir: Path, split: str) -> ShardReader:
        """The ``split`` of the dataset at ``dataset_dir``, its shards checked against the index
        (raises ``CorruptShardError``)."""
        index = json.loads((Path(dataset_dir) / "index.json").read_text())
        if split not in index["splits"]:
            raise KeyError(f"dataset at {dataset_dir} has no '{split}' split (has {sorted(index['splits'])})")
        shards = index["splits"][split]["shards"]
        for shard in shards:
            if problem := shard_problem(Path(dataset_dir), shard):
                raise CorruptShardError(problem)
        return cls([Path(dataset_dir) / s["path"] for s in shards], [s["count"] for s in shards])

    def __len__(self) -> int:
        return self.starts[-1]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_open": {}}  # each process maps the files itself

    def _locate(self, index: int) -> tuple[dict[str, torch.Tensor], int]:
        if not 0 <= index < len(self):
            raise IndexError(f"image {index} of a split with {len(self)} images")
        k = bisect.bisect_right(self.starts, index) - 1
        if k not in self._open:
            self._open[k] = load_shard(self.paths[k])
        return self._open[k], index - self.starts[k]

    def image(self, index: int) -> torch.Tensor:
        """(3, h, w) uint8."""
        shard, i = self._locate(index)
        h, w = shard["shapes"][i].tolist()
        return shard["pixels"][shard["offsets"][i] : shard["offsets"][i + 1]].view(3, h, w)

    def mask(self, index: int) -> torch.Tensor:
        """(h, w) uint8 class ids."""
        shard, i = self._locate(index)
        if len(shard["mask_offsets"]) == 1:
            raise KeyError("this split has no masks")
        h, w = shard["shapes"][i].tolist()
        return shard["mask_pixels"][shard["mask_offsets"][i] : shard["mask_offsets"][i + 1]].view(h, w)

    def labels(self) -> torch.Tensor:
        """(N,) int64 over all shards."""
        return (
            torch.cat([load_shard(p)["labels"] for p in self.paths])
            if self.paths
            else torch.zeros(0, dtype=torch.int64)
        )


def file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def shard_problem(dataset_dir: Path, entry: Mapping) -> str | None:
    """What is wrong with the shard an index ``entry`` describes (None: it is as written)."""
    path = dataset_dir / entry["path"]
    rebuild = (
        f"rebuild the dataset: delete {dataset_dir / 'index.json'} and run `kedro run --pipelines dataset` "
        "(the images are decoded again from the source folder)"
    )
    if "sha256" not in entry:
        return f"dataset index {dataset_dir / 'index.json'} has no checksums (written by an older dinoflow): {rebuild}"
    if not path.exists():
        return f"dataset shard {path} is missing: {rebuild}"
    stat = path.stat()
    if stat.st_size != entry["bytes"]:
        return (
            f"dataset shard {path} has {stat.st_size} bytes where {entry['bytes']} were written (truncated?): {rebuild}"
        )
    seen = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, entry["sha256"])
    if seen in _VERIFIED:  # evaluation opens a split more than once: hash an unchanged file once per process
        return None
    digest = file_sha256(path)
    if digest != entry["sha256"]:
        return (
            f"dataset shard {path} has sha256 {digest[:16]} where {entry['sha256'][:16]} was written "
            f"(damaged bytes): {rebuild}"
        )
    _VERIFIED.add(seen)
    return None


def dataset_fingerprint(rows: Iterable[Sequence[str]]) -> str:
    """sha256 over sorted (path, sha256, label, split) rows: names the exact data content."""
    digest = hashlib.sha256()
    for row in sorted(tuple(str(v) for v in r) for r in rows):
        digest.update(("\t".join(row) + "\n").encode())
    return digest.hexdigest()


def plan_shards(
    records: Sequence[ImageRecord], max_side: int, max_aspect: float, max_bytes: int
) -> list[list[ImageRecord]]:
    """Consecutive groups of records whose decoded pixels stay under ``max_bytes`` (≥ 1 image each)."""
    groups: list[list[ImageRecord]] = [[]]
    size = 0
    for record in records:
        h, w = stored_shape(record.width or max_side, record.height or max_side, max_side, max_aspect)
        if groups[-1] and size + 3 * h * w > max_bytes:
            groups.append([])
            size = 0
        groups[-1].append(record)
        size += 3 * h * w
    return groups if groups[0] else []


def _write_shard(job: tuple[list[ImageRecord], int, float, tuple[int, int, int], Path]) -> dict:
    """Write one shard; returns its index entry (name, image count, bytes, sha256)."""
    records, max_side, max_aspect, background, path = job
    return index_entry(save_shard(build_shard(records, max_side, max_aspect, background), path), len(records))


def index_entry(path: Path, count: int) -> dict:
    """How ``index.json`` lists a written shard: file name, images, size and sha256 (checked on open)."""
    return {"path": path.name, "count": count, "bytes": path.stat().st_size, "sha256": file_sha256(path)}


def _write_contents(path: Path, jobs: list[tuple[list[ImageRecord], int, float, tuple[int, int, int], Path]]) -> None:
    """One line per stored image: where it is (shard, position) and which file it came from."""
    lines = ["shard\tposition\tlabel\tsha256\tsource"]
    for records, *_, shard in jobs:
        lines += [f"{shard.name}\t{i}\t{r.label}\t{r.sha256}\t{r.path}" for i, r in enumerate(records)]
    path.write_text("\n".join(lines) + "\n")


def build_dataset(
    records: Mapping[str, Sequence[ImageRecord]],
    classes: Sequence[str],
    out_dir: Path,
    fingerprint_rows: Iterable[Sequence[str]],
    max_side: int,
    max_aspect: float = 3.0,
    max_shard_mb: float = 256.0,
    workers: int = 0,
    progress: bool = True,
    background: tuple[int, int, int] = WHITE,
) -> dict:
    """Write every split's shards under ``out_dir`` in parallel and return the dataset index
    (``out_dir/index.json``, shard paths relative to it so the folder can move, plus ``dir``).

    Nothing is rebuilt when the content fingerprint and the storage settings (including the
    ``background`` transparency is composited on) are unchanged and every shard is as written.
    """
    out_dir = Path(out_dir)
    settings = {"format": FORMAT_VERSION, "max_side": max_side, "max_aspect": max_aspect, "max_shard_mb": max_shard_mb,
                "background": list(background)}  # fmt: skip
    fingerprint = dataset_fingerprint(fingerprint_rows)
    index_path = out_dir / "index.json"
    if index_path.exists():
        previous = json.loads(index_path.read_text())
        if previous.get("fingerprint") == fingerprint and previous.get("settings") == settings:
            shards = [shard for split in previous["splits"].values() for shard in split["shards"]]
            problems = [p for p in (shard_problem(out_dir, shard) for shard in shards) if p]
            if not problems:
                return {**previous, "dir": str(out_dir)}
            log.warning("rebuilding the dataset, %d shard(s) differ from what was written: %s", len(problems),
                        problems[0])  # fmt: skip
    for stale in out_dir.glob("*.pt"):
        stale.unlink()
    jobs, splits, shard_names = [], {}, {}
    for split, split_records in sorted(records.items()):
        groups = plan_shards(split_records, max_side, max_aspect, int(max_shard_mb * 2**20))
        names = shard_names[split] = [f"{split}-{k:05d}.pt" for k in range(len(groups))]
        jobs += [(g, max_side, max_aspect, tuple(background), out_dir / n) for g, n in zip(groups, names, strict=True)]
        splits[split] = {
            "count": len(split_records),
            "has_masks": bool(split_records) and all(r.mask_path is not None for r in split_records),
        }
    workers = min(workers or os.cpu_count() or 1, max(1, len(jobs)))
    bar = tqdm(total=len(jobs), desc="shards", unit="shard", disable=not progress)
    entries = []
    for entry in process_map(_write_shard, jobs, workers=workers):
        entries.append(entry)
        bar.update()
    bar.close()
    written = {entry["path"]: entry for entry in entries}
    for split, info in splits.items():
        info["shards"] = [written[name] for name in shard_names[split]]
    _write_contents(out_dir / "contents.tsv", jobs)
    index = {"fingerprint": fingerprint, "settings": settings, "classes": list(classes), "splits": splits}
    index_path.write_text(json.dumps(index, indent=2) + "\n")
    return {**index, "dir": str(out_dir)}
