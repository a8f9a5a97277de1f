"""A messy clip-art-like folder, to try the pipeline as a user with a real collection would.

Writes ``<out>/<category>/<subcategory>/<name>.<ext>`` (two folder levels, as clip-art sets are
sorted) with what such collections hold: black line art on a transparent background (RGBA, palette
with a transparent index, grayscale + alpha), some opaque RGB and JPEG, sizes from a few pixels to a
16,000 px wide strip, about 9% exact duplicates under other names, and a few truncated files. Each
top-level category draws its own kind of figure, so ``data.label_depth=1`` gives learnable labels.

    python benchmarks/clipart_folder.py --out /tmp/clipart [--per-leaf 60]
    kedro run --params data.source=/tmp/clipart,data.label_depth=1,pretrain.preset=ci
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

LEAVES = {
    "animals": ("mammals", "birds"),
    "buildings": ("houses", "towers"),
    "symbols": ("arrows", "stars"),
    "vehicles": ("cars", "boats"),
}


def _figure(category: str, draw: ImageDraw.ImageDraw, size: int, rng: np.random.Generator) -> None:
    """Black strokes of the category's kind of figure, placed and sized at random."""
    scale = size * rng.uniform(0.25, 0.45)
    cx, cy = size / 2 + rng.uniform(-0.15, 0.15, 2) * size
    width = max(1, int(size * rng.uniform(0.02, 0.05)))
    if category == "animals":  # body and head: two ellipses, legs
        draw.ellipse((cx - scale, cy - scale / 2, cx + scale / 3, cy + scale / 2), outline="black", width=width)
        draw.ellipse((cx + scale / 3, cy - scale, cx + scale, cy - scale / 3), outline="black", width=width)
        for x in (cx - scale * 0.7, cx - scale * 0.1):
            draw.line((x, cy + scale / 2, x, cy + scale), fill="black", width=width)
    elif category == "buildings":  # walls, roof, a door
        draw.rectangle((cx - scale / 2, cy - scale / 3, cx + scale / 2, cy + scale), outline="black", width=width)
        draw.polygon([(cx - scale * 0.7, cy - scale / 3), (cx, cy - scale), (cx + scale * 0.7, cy - scale / 3)],
                     outline="black", width=width)  # fmt: skip
        draw.rectangle((cx - scale / 8, cy + scale / 2, cx + scale / 8, cy + scale), outline="black", width=width)
    elif category == "symbols":  # a five-pointed star
        angles = np.pi / 2 + np.arange(10) * np.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, scale, scale * 0.4)
        draw.polygon(list(zip(cx + radii * np.cos(angles), cy - radii * np.sin(angles), strict=True)),
                     outline="black", width=width)  # fmt: skip
    else:  # vehicles: a body and two wheels
        draw.rectangle((cx - scale, cy - scale / 3, cx + scale, cy + scale / 4), outline="black", width=width)
        for x in (cx - scale / 2, cx + scale / 2):
            r = scale / 4
            draw.ellipse((x - r, cy + scale / 4 - r, x + r, cy + scale / 4 + r), outline="black", width=width)


def _save(image: Image.Image, path: Path, kind: str) -> Path:
    """Store line art on transparency the way clip-art files come: RGBA, palette or LA PNG, or flat."""
    if kind == "rgba":
        image.save(path.with_suffix(".png"))
    elif kind == "palette":
        image.convert("RGBA").quantize(colors=16).save(path.with_suffix(".png"))
    elif kind == "la":
        image.convert("LA").save(path.with_suffix(".png"))
    else:  # an opaque export on white, as JPEG
        flat = Image.new("RGB", image.size, "white")
        flat.paste(image, mask=image.getchannel("A"))
        flat.save(path.with_suffix(".jpg"), quality=90)
        return path.with_suffix(".jpg")
    return path.with_suffix(".png")


def write_folder(out: Path, per_leaf: int, seed: int = 0) -> dict[str, int]:
    rng = np.random.default_rng(seed)
    written: list[Path] = []
    for category, subcategories in LEAVES.items():
        for sub in subcategories:
            folder = out / category / sub
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(per_leaf):
                size = int(rng.choice([48, 64, 96, 128, 256, 512]))
                image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
                _figure(category, ImageDraw.Draw(image), size, rng)
                kind = str(rng.choice(["rgba", "rgba", "palette", "la", "flat"]))
                written.append(_save(image, folder / f"{sub}_{index:04d}", kind))
    duplicates = rng.choice(len(written), size=int(0.09 * len(written)), replace=False)
    for k, index in enumerate(duplicates):  # the same file again, elsewhere, under another name
        source = written[index]
        shutil.copyfile(source, source.parent / f"copy_{k:04d}{source.suffix}")
    odd = out / "symbols" / "stars"
    Image.new("RGBA", (6, 6), (0, 0, 0, 255)).save(odd / "tiny_6px.png")  # below data.min_size
    Image.new("RGBA", (96, 96), (0, 0, 0, 0)).save(odd / "blank_transparent.png")  # nothing drawn
    strip = Image.new("RGBA", (16000, 40), (0, 0, 0, 0))
    ImageDraw.Draw(strip).line((0, 20, 16000, 20), fill="black", width=3)
    strip.save(odd / "banner_16000px.png")  # a panorama: its centre is kept
    for k in range(3):  # downloads that stopped half-way
        data = written[k].read_bytes()
        (written[k].parent / f"truncated_{k}{written[k].suffix}").write_bytes(data[: len(data) // 2])
    return {"images": len(written), "duplicates": len(duplicates), "odd": 3, "truncated": 3}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--per-leaf", type=int, default=60, help="images per sub-category folder")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(write_folder(args.out, args.per_leaf, args.seed))  # noqa: T201 - CLI output


if __name__ == "__main__":
    main()
