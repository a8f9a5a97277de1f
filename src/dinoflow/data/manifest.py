"""Image manifest: one row per file under a data root, with what we know about it.

Layouts understood (``<root>/images/`` is used when it exists, else ``<root>/``)::

    train/<class>/*.png, val/<class>/*.png    labelled, explicit split
    <class>/*.jpg                              labelled, split by a stable hash of the path
    *.jpg                                      unlabelled, split by hash

Masks, when present, live under ``<root>/masks/`` with the same relative path (``.png``).
A row never hides a problem: unreadable or too-small files stay in the manifest with a
``status`` other than ``ok`` (the quarantine reason).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
SPLITS = ("train", "val")


@dataclass(frozen=True)
class ManifestRow:
    path: str  # relative to the data root, POSIX separators
    sha256: str
    bytes: int
    format: str
    width: int
    height: int
    mode: str
    decodable: bool
    label: str  # "" when unlabelled
    mask_path: str  # "" when there is no mask
    split: str
    status: str  # "ok" or the quarantine reason


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def hash_split(relative_path: str, val_ratio: float) -> str:
    """Deterministic split from the path alone: stable across machines and re-ingests."""
    bucket = int(hashlib.sha256(relative_path.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "val" if bucket < val_ratio else "train"


def inspect_image(path: Path, min_size: int) -> dict:
    """Decode fully (not just the header) and report format, size, mode and a status."""
    info = {"format": "", "width": 0, "height": 0, "mode": "", "decodable": False}
    if path.stat().st_size == 0:
        return {**info, "status": "zero-byte file"}
    try:
        with Image.open(path) as image:
            info.update(format=image.format or "", width=image.width, height=image.height, mode=image.mode)
            image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        return {**info, "status": f"not decodable: {type(err).__name__}: {err}"[:200]}
    info["decodable"] = True
    if min(info["width"], info["height"]) < min_size:
        return {**info, "status": f"smaller than {min_size} px"}
    return {**info, "status": "ok"}


def _describe(root: Path, image_root: Path, file: Path, val_ratio: float, min_size: int) -> ManifestRow:
    rel = file.relative_to(image_root).as_posix()
    parts = rel.split("/")
    if parts[0] in SPLITS and len(parts) > 1:
        split, class_parts = parts[0], parts[1:-1]
    else:
        split, class_parts = hash_split(rel, val_ratio), parts[:-1]
    mask = root / "masks" / Path(rel).with_suffix(".png")
    return ManifestRow(
        path=file.relative_to(root).as_posix(),
        sha256=_sha256(file),
        bytes=file.stat().st_size,
        label="/".join(class_parts),
        mask_path=mask.relative_to(root).as_posix() if mask.is_file() else "",
        split=split,
        **inspect_image(file, min_size),
    )


def scan_images(root: Path) -> list[Path]:
    image_root = root / "images" if (root / "images").is_dir() else root
    files = []
    for dirpath, dirnames, filenames in os.walk(image_root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and Path(dirpath, d) != root / "masks")
        files += [Path(dirpath, f) for f in sorted(filenames) if Path(f).suffix.lower() in IMAGE_SUFFIXES]
    return files


def build_manifest(root: Path, val_ratio: float = 0.2, min_size: int = 16, progress: bool = True) -> list[dict]:
    """Describe every image file under ``root`` (sorted, so the manifest is reproducible)."""
    root = Path(root).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"data source {root} is not a directory")
    image_root = root / "images" if (root / "images").is_dir() else root
    files = scan_images(root)
    if not files:
        raise FileNotFoundError(f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) under {root}")
    rows = [
        asdict(_describe(root, image_root, f, val_ratio, min_size))
        for f in tqdm(files, desc="ingest", unit="img", disable=not progress, mininterval=1.0)
    ]
    return _mark_duplicates(rows)


def _mark_duplicates(rows: list[dict]) -> list[dict]:
    """Keep the first file of each identical-content group; quarantine the rest."""
    first_seen: dict[str, str] = {}
    for row in rows:
        if row["status"] != "ok":
            continue
        original = first_seen.setdefault(row["sha256"], row["path"])
        if original != row["path"]:
            row["status"] = f"duplicate of {original}"
    return rows
