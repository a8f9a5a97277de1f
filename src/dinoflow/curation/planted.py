"""Plant known near-copies into an image folder, to measure curation (``benchmarks/curation.py``
and the tests): the kinds of copy a team's folders hold — a re-encoded JPEG, a resized file, a
small crop, a small colour cast — of training images, and copies of validation images placed in
training. The answer key says which file copies which."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

COPY_KINDS = ("jpeg", "resize", "crop", "colour")


def near_copy(image: Image.Image, kind: str, rng: np.random.Generator) -> Image.Image:
    """One near-copy of an RGB image (the cast, crop and scale are drawn from ``rng``)."""
    if kind == "jpeg":
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=int(rng.integers(40, 80)))
        return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    if kind == "resize":
        scale = rng.uniform(0.6, 0.9) if min(image.size) * 0.6 >= 16 else rng.uniform(1.2, 1.6)
        return image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BICUBIC)
    if kind == "crop":
        w, h = image.size
        left, top, right, bottom = (int(rng.integers(0, max(1, round(0.05 * s)) + 1)) for s in (w, h, w, h))
        return image.crop((left, top, w - right, h - bottom))
    if kind == "colour":
        gain = rng.uniform(0.92, 1.08, size=3)
        offset = rng.uniform(-10, 10, size=3)
        pixels = np.asarray(image, dtype=np.float32) * gain + offset
        return Image.fromarray(pixels.clip(0, 255).astype(np.uint8))
    raise ValueError(f"unknown near-copy kind {kind!r}: one of {COPY_KINDS}")


@dataclass(frozen=True)
class Plant:
    copy: str  # relative path of the planted file
    original: str  # relative path of the file it copies
    kind: str  # one of COPY_KINDS, or "val copy"


def plant_copies(
    root: Path, originals: list[str], kinds: list[str], seed: int, target_dir: str | None = None
) -> list[Plant]:
    """Write one near-copy of each ``originals[i]`` (relative to ``root``) of kind ``kinds[i]``,
    beside it or under ``target_dir`` (e.g. a training class folder for copies of val images)."""
    rng = np.random.default_rng(seed)
    plants = []
    for i, (original, kind) in enumerate(zip(originals, kinds, strict=True)):
        source = root / original
        with Image.open(source) as image:
            copy = near_copy(image.convert("RGB"), kind, rng)
        folder = root / target_dir if target_dir else source.parent
        # lossless: the copy keeps exactly its degradation; a copy placed elsewhere names where its
        # original lies, so it never overwrites a copy of a same-named image planted there
        origin = "" if target_dir is None else f"_of_{source.parent.parent.name}"
        name = f"{source.stem}_copy{i}_{kind}{origin}.png"
        folder.mkdir(parents=True, exist_ok=True)
        copy.save(folder / name)
        plants.append(Plant((folder / name).relative_to(root).as_posix(), original, kind))
    return plants
