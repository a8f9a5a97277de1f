"""Image manifest: one row per file under a data root, with what we know about it.

Layouts understood (``<root>/images/`` is used when it exists, else ``<root>/``)::

    train/<class>/*.png, val/<class>/*.png    labelled, explicit split
    <class>/*.jpg                              labelled, split by a stable hash of the path
    *.jpg                                      unlabelled, split by hash

Masks, when present, live under ``<root>/masks/`` with the same relative path (``.png``).
A row never hides a problem: unreadable, corrupt, empty, too small or too large, animated,
duplicate files and symlinks leaving the root stay in the manifest with a ``status`` other than
``ok`` (the quarantine reason). Files kept after a conversion (CMYK, 16-bit, palette, alpha,
EXIF rotation) say so in ``note`` / ``exif_orientation``.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from dinoflow.data.decode import conversion_note

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
SPLITS = ("train", "val")
ORIENTATION_TAG = 0x0112  # EXIF Orientation


@dataclass(frozen=True)
class ManifestRow:
    path: str  # relative to the data root, POSIX separators
    sha256: str
    bytes: int
    mtime_ns: int  # with ``bytes``, decides whether a re-ingest must read the file again
    format: str
    width: int  # after EXIF orientation
    height: int
    mode: str
    decodable: bool
    exif_orientation: int  # 1 = upright (or no EXIF); other values are applied when loading
    label: str  # "" when unlabelled
    mask_path: str  # "" when there is no mask
    split: str
    status: str  # "ok" or the quarantine reason
    note: str  # what loading will do to a kept file (conversions), "" when nothing


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


def inspect_image(path: Path, min_size: int, max_pixels: int) -> dict:
    """Decode fully (not just the header) and report format, size, mode and a status.

    The size is checked from the header *before* decoding, so a decompression bomb is never
    expanded in memory.
    """
    info = {"format": "", "width": 0, "height": 0, "mode": "", "decodable": False, "exif_orientation": 1, "note": ""}
    try:
        if path.stat().st_size == 0:
            return {**info, "status": "zero-byte file"}
        with Image.open(path) as image:
            orientation = int(image.getexif().get(ORIENTATION_TAG, 1) or 1)
            width, height = (image.height, image.width) if orientation in (5, 6, 7, 8) else image.size
            info.update(format=image.format or "", width=width, height=height, mode=image.mode,
                        exif_orientation=orientation)  # fmt: skip
            if width * height > max_pixels:
                return {
                    **info,
                    "status": f"too many pixels ({width}x{height} > {max_pixels}): possible decompression bomb",
                }
            frames = getattr(image, "n_frames", 1)
            if frames > 1:
                return {**info, "status": f"animated or multi-frame image ({frames} frames)"}
            image.load()
            info["note"] = conversion_note(image.mode, "transparency" in image.info)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        return {**info, "status": f"not decodable: {type(err).__name__}: {err}"[:200]}
    info["decodable"] = True
    if min(info["width"], info["height"]) < min_size:
        return {**info, "status": f"smaller than {min_size} px"}
    return {**info, "status": "ok"}


def _describe(
    root: Path, image_root: Path, val_ratio: float, min_size: int, max_pixels: int, file: Path, cached: dict | None
) -> dict:
    rel = file.relative_to(image_root).as_posix()
    parts = rel.split("/")
    if parts[0] in SPLITS and len(parts) > 1:
        split, class_parts = parts[0], parts[1:-1]
    else:
        split, class_parts = hash_split(rel, val_ratio), parts[:-1]
    mask = root / "masks" / Path(rel).with_suffix(".png")
    where = {
        "path": file.relative_to(root).as_posix(),
        "label": "/".join(class_parts),
        "mask_path": mask.relative_to(root).as_posix() if mask.is_file() else "",
        "split": split,
    }
    empty = {"sha256": "", "bytes": 0, "mtime_ns": 0, "format": "", "width": 0, "height": 0, "mode": "", "decodable": False,
             "exif_orientation": 1, "note": ""}  # fmt: skip
    real = file.resolve()
    if file.is_symlink() and not real.is_relative_to(root):
        return asdict(ManifestRow(**where, **empty, status="symlink pointing outside the data root"))
    try:
        stat = file.stat()
        if cached and (cached["bytes"], cached["mtime_ns"]) == (stat.st_size, stat.st_mtime_ns):
            return {**cached, **where, "status": _size_status(cached["width"], cached["height"], min_size, max_pixels)}
        digest = _sha256(file)
    except OSError as err:
        return asdict(ManifestRow(**where, **empty, status=f"unreadable: {type(err).__name__}: {err}"[:200]))
    inspected = inspect_image(file, min_size, max_pixels)
    return asdict(ManifestRow(**where, sha256=digest, bytes=stat.st_size, mtime_ns=stat.st_mtime_ns, **inspected))


def _size_status(width: int, height: int, min_size: int, max_pixels: int) -> str:
    """Status of an already decoded file under the current size limits."""
    if width * height > max_pixels:
        return f"too many pixels ({width}x{height} > {max_pixels}): possible decompression bomb"
    if min(width, height) < min_size:
        return f"smaller than {min_size} px"
    return "ok"


def scan_images(root: Path) -> list[Path]:
    image_root = root / "images" if (root / "images").is_dir() else root
    files = []
    for dirpath, dirnames, filenames in os.walk(image_root):  # does not follow directory symlinks
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and Path(dirpath, d) != root / "masks")
        files += [Path(dirpath, f) for f in sorted(filenames) if Path(f).suffix.lower() in IMAGE_SUFFIXES]
    return files


def build_manifest(
    root: Path,
    val_ratio: float = 0.2,
    min_size: int = 16,
    max_pixels: int = 89_478_485,
    workers: int = 0,
    progress: bool = True,
    cache_path: Path | None = None,
) -> list[dict]:
    """Describe every image file under ``root`` (sorted, so the manifest is reproducible).

    Args:
        max_pixels: larger images are quarantined unread (Pillow's own bomb limit by default).
        workers: processes for hashing and decoding (0: one per CPU core).
        cache_path: JSON file of the last ingest of this root; files whose size and mtime are
            unchanged and that decoded then are not read again. Rewritten at the end.
    """
    root = Path(root).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"data source {root} is not a directory")
    image_root = root / "images" if (root / "images").is_dir() else root
    files = scan_images(root)
    if not files:
        raise FileNotFoundError(f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) under {root}")
    previous = _load_cache(cache_path, root)
    describe = partial(_describe, root, image_root, val_ratio, min_size, max_pixels)
    # Each file travels with its own cached row only: the whole cache is never sent to a worker.
    cached = [previous.get(f.relative_to(root).as_posix()) for f in files]
    bar = partial(tqdm, total=len(files), desc="ingest", unit="img", disable=not progress, mininterval=1.0)
    workers = workers or os.cpu_count() or 1
    if workers == 1:
        rows = [describe(f, c) for f, c in bar(zip(files, cached, strict=True))]
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            rows = list(bar(pool.map(describe, files, cached, chunksize=64)))
    if cache_path is not None:
        _save_cache(cache_path, root, rows)
    return _mark_duplicates(rows)


def _load_cache(cache_path: Path | None, root: Path) -> dict[str, dict]:
    """Rows of the previous ingest of ``root`` that decoded, by path (empty if none)."""
    if cache_path is None or not Path(cache_path).exists():
        return {}
    cache = json.loads(Path(cache_path).read_text())
    if cache.get("root") != str(root):
        return {}
    return {row["path"]: row for row in cache["rows"] if row["decodable"]}


def _save_cache(cache_path: Path, root: Path, rows: list[dict]) -> None:
    cache_path = Path(cache_path)
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache_path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"root": str(root), "rows": rows}))
    tmp.replace(cache_path)


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
