"""Image manifest: one row per file under a data root, with what we know about it.

Layouts understood (``<root>/images/`` is used when it exists, else ``<root>/``)::

    train/<class>/*.png, val/<class>/*.png    labelled, explicit split
    <class>/*.jpg                              labelled, split by a stable hash of the path
    *.jpg                                      unlabelled, split by hash

The label is the folder path below the split (or the root), cut to its first ``label_depth``
levels when that is set (``animals/mammals/cats.png`` is ``animals`` at depth 1, unlabelled at 0).
Masks, when present, live under ``<root>/masks/`` with the same relative path (``.png``).
A row never hides a problem: unreadable, corrupt, empty, too small or too large, animated,
near-uniform (blank after conversion to RGB), duplicate files and symlinks leaving the root stay
in the manifest with a ``status`` other than ``ok`` (the quarantine reason; ``reason_of`` gives
its kind without the file's own details, ``quarantine_summary`` counts them). Exact duplicates
(``duplicate of <first copy>``) are a kind of their own: dropped, never counted as broken. Files
kept after a conversion (CMYK, 16-bit, palette, alpha composited on the configured background,
EXIF rotation) say so in ``note`` / ``exif_orientation``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from dinoflow.atomic import atomic_path
from dinoflow.data.decode import WHITE, conversion_note, pixel_std, to_rgb
from dinoflow.parallel import process_map

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
SPLITS = ("train", "val")
ORIENTATION_TAG = 0x0112  # EXIF Orientation
DUPLICATE = "duplicate of "  # status prefix of an exact copy (same sha256) of an earlier file
CACHE_FORMAT = 2  # rows carry pixel_std


@dataclass(frozen=True)
class IngestRules:
    """What decides a file's label, split and status (the ``data.*`` parameters, as plain values)."""

    val_ratio: float = 0.2  # val share when the folder has no train/ and val/
    min_size: int = 16  # shorter side below this (px): quarantined
    max_pixels: int = 89_478_485  # above this: quarantined unread (Pillow's bomb limit)
    min_pixel_std: float = 0.0  # pixel std (0-255) below this after conversion: near-uniform; 0 = no check
    background: tuple[int, int, int] = WHITE  # transparency is composited on this RGB colour
    label_depth: int | None = None  # folder levels that make the label; None = all, 0 = unlabelled


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
    pixel_std: float  # largest per-channel pixel std after conversion to RGB (0-255); -1 when not decoded


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


def inspect_image(path: Path, rules: IngestRules = IngestRules()) -> dict:
    """Decode fully (not just the header), convert to RGB as loading will, and report format,
    size, mode, pixel spread and a status.

    The size is checked from the header *before* decoding, so a decompression bomb is never
    expanded in memory.
    """
    info = {"format": "", "width": 0, "height": 0, "mode": "", "decodable": False, "exif_orientation": 1, "note": "",
            "pixel_std": -1.0}  # fmt: skip
    try:
        if path.stat().st_size == 0:
            return {**info, "status": "zero-byte file"}
        with Image.open(path) as image:
            orientation = int(image.getexif().get(ORIENTATION_TAG, 1) or 1)
            width, height = (image.height, image.width) if orientation in (5, 6, 7, 8) else image.size
            info.update(format=image.format or "", width=width, height=height, mode=image.mode,
                        exif_orientation=orientation)  # fmt: skip
            if width * height > rules.max_pixels:
                return {**info, "status": _status(width, height, -1.0, rules)}
            frames = getattr(image, "n_frames", 1)
            if frames > 1:
                return {**info, "status": f"animated or multi-frame image ({frames} frames)"}
            image.load()
            info["note"] = conversion_note(image.mode, "transparency" in image.info, rules.background)
            info["pixel_std"] = round(pixel_std(to_rgb(image, rules.background)), 3)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        return {**info, "status": f"not decodable: {type(err).__name__}: {err}"[:200]}
    info["decodable"] = True
    return {**info, "status": _status(info["width"], info["height"], info["pixel_std"], rules)}


def _describe(root: Path, image_root: Path, rules: IngestRules, file: Path, cached: dict | None) -> dict:
    rel = file.relative_to(image_root).as_posix()
    parts = rel.split("/")
    if parts[0] in SPLITS and len(parts) > 1:
        split, class_parts = parts[0], parts[1:-1]
    else:
        split, class_parts = hash_split(rel, rules.val_ratio), parts[:-1]
    if rules.label_depth is not None:
        class_parts = class_parts[: rules.label_depth]
    mask = root / "masks" / Path(rel).with_suffix(".png")
    where = {
        "path": file.relative_to(root).as_posix(),
        "label": "/".join(class_parts),
        "mask_path": mask.relative_to(root).as_posix() if mask.is_file() else "",
        "split": split,
    }
    empty = {"sha256": "", "bytes": 0, "mtime_ns": 0, "format": "", "width": 0, "height": 0, "mode": "", "decodable": False,
             "exif_orientation": 1, "note": "", "pixel_std": -1.0}  # fmt: skip
    real = file.resolve()
    if file.is_symlink() and not real.is_relative_to(root):
        return asdict(ManifestRow(**where, **empty, status="symlink pointing outside the data root"))
    try:
        stat = file.stat()
        if cached and (cached["bytes"], cached["mtime_ns"]) == (stat.st_size, stat.st_mtime_ns):
            return {**cached, **where, "status": _status(cached["width"], cached["height"], cached["pixel_std"], rules)}
        digest = _sha256(file)
    except OSError as err:
        return asdict(ManifestRow(**where, **empty, status=f"unreadable: {type(err).__name__}: {err}"[:200]))
    inspected = inspect_image(file, rules)
    return asdict(ManifestRow(**where, sha256=digest, bytes=stat.st_size, mtime_ns=stat.st_mtime_ns, **inspected))


def _status(width: int, height: int, std: float, rules: IngestRules) -> str:
    """Status of a file from its size and pixel spread under the current limits (also for cached rows)."""
    if width * height > rules.max_pixels:
        return f"too many pixels ({width}x{height} > {rules.max_pixels}): possible decompression bomb"
    if min(width, height) < rules.min_size:
        return f"smaller than {rules.min_size} px"
    if 0 <= std < rules.min_pixel_std:
        return f"near-uniform image (pixel std {std:.2f} < {rules.min_pixel_std:g} of 255, data.min_pixel_std)"
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
    *,
    min_pixel_std: float = 0.0,
    background: tuple[int, int, int] = WHITE,
    label_depth: int | None = None,
) -> list[dict]:
    """Describe every image file under ``root`` (sorted, so the manifest is reproducible).

    Args:
        max_pixels: larger images are quarantined unread (Pillow's own bomb limit by default).
        workers: processes for hashing and decoding (0: one per CPU core).
        cache_path: JSON file of the last ingest of this root; files whose size and mtime are
            unchanged and that decoded then are not read again. Rewritten at the end.
        min_pixel_std: images whose pixel std after conversion (0-255) is below this are
            quarantined as near-uniform (0: no check).
        background: RGB colour transparency is composited on (changing it re-reads every file).
        label_depth: folder levels below the split / root that make the label (None: all; 0: none).
    """
    rules = IngestRules(val_ratio, min_size, max_pixels, min_pixel_std, tuple(background), label_depth)
    root = Path(root).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"data source {root} is not a directory")
    image_root = root / "images" if (root / "images").is_dir() else root
    files = scan_images(root)
    if not files:
        raise FileNotFoundError(f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) under {root}")
    previous = _load_cache(cache_path, root, rules.background)
    describe = partial(_describe, root, image_root, rules)
    # Each file travels with its own cached row only: the whole cache is never sent to a worker.
    cached = [previous.get(f.relative_to(root).as_posix()) for f in files]
    bar = partial(tqdm, total=len(files), desc="ingest", unit="img", disable=not progress, mininterval=1.0)
    workers = workers or os.cpu_count() or 1
    rows = list(bar(process_map(describe, files, cached, workers=workers, chunksize=64)))
    if cache_path is not None:
        _save_cache(cache_path, root, rules.background, rows)
    return _mark_duplicates(rows)


def _cache_key(root: Path, background: tuple[int, int, int]) -> dict:
    """What a cached row's content depends on besides the file itself."""
    return {"root": str(root), "format": CACHE_FORMAT, "background": list(background)}


def _load_cache(cache_path: Path | None, root: Path, background: tuple[int, int, int]) -> dict[str, dict]:
    """Rows of the previous ingest of ``root`` (same background) that decoded, by path (empty if none)."""
    if cache_path is None or not Path(cache_path).exists():
        return {}
    cache = json.loads(Path(cache_path).read_text())
    if {k: cache.get(k) for k in ("root", "format", "background")} != _cache_key(root, background):
        return {}
    return {row["path"]: row for row in cache["rows"] if row["decodable"]}


def _save_cache(cache_path: Path, root: Path, background: tuple[int, int, int], rows: list[dict]) -> None:
    with atomic_path(cache_path, "ingest cache") as tmp:
        tmp.write_text(json.dumps({**_cache_key(root, background), "rows": rows}))


def _mark_duplicates(rows: list[dict]) -> list[dict]:
    """Keep the first file of each identical-content group; quarantine the rest."""
    first_seen: dict[str, str] = {}
    for row in rows:
        if row["status"] != "ok":
            continue
        original = first_seen.setdefault(row["sha256"], row["path"])
        if original != row["path"]:
            row["status"] = f"{DUPLICATE}{original}"
    return rows


def inside(root: Path, relative: str) -> Path:
    """``root / relative``, refused when it leads outside ``root`` (a tampered manifest). Checked on
    the path itself: symlinks leaving the root were already quarantined at ingestion, and a DVC
    cache of symlinks stays usable."""
    path = Path(os.path.normpath(root / relative))
    if not path.is_relative_to(os.path.normpath(root)):
        raise ValueError(f"manifest path {relative!r} resolves outside the data root {root}: refused")
    return path


def is_duplicate(status: str) -> bool:
    """An exact copy of an earlier file: dropped, not broken."""
    return status.startswith(DUPLICATE)


def reason_of(status: str) -> str:
    """The kind of a quarantine status without the file's own details
    (``not decodable: OSError: ...`` → ``not decodable``, ``duplicate of a.png`` → ``duplicate``)."""
    if is_duplicate(status):
        return "duplicate"
    return re.split(r" \(|: ", status, maxsplit=1)[0]


def quarantine_summary(rows: Iterable[dict], examples: int = 3) -> list[tuple[str, int, list[str]]]:
    """(reason, count, its first ``examples`` paths) per kind of quarantine reason, most frequent first."""
    groups: dict[str, list[str]] = {}
    for row in rows:
        if row["status"] != "ok":
            groups.setdefault(reason_of(row["status"]), []).append(row["path"])
    ranked = sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))
    return [(reason, len(paths), paths[:examples]) for reason, paths in ranked]
