"""Fashion-MNIST (Xiao et al. 2017) as an ordinary labelled image folder, from Debian's
``dataset-fashion-mnist`` package (no download at run time):

    <out>/train/<class>/<index>.png   60,000 images
    <out>/val/<class>/<index>.png     10,000 images (the official test split)

The 28 px grayscale images are resized to 32 px (bicubic, antialiased) and stored as RGB, so the
folder looks like any user's photos to the pipeline.

    python benchmarks/fashion_mnist.py --out /tmp/fashion-mnist [--train 60000 --val 10000]
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

PACKAGE = "dataset-fashion-mnist"
SOURCE = Path("/usr/share/datasets/fashion-mnist")
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "val": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot"]


class DatasetUnavailable(RuntimeError):
    """The package is missing and could not be installed here."""


def ensure_installed() -> Path:
    """The package's folder, installing the package with apt when it is missing and we are root."""
    if all((SOURCE / name).exists() for pair in FILES.values() for name in pair):
        return SOURCE
    if shutil.which("apt-get") and os.geteuid() == 0:
        print(f"installing {PACKAGE} with apt-get (benchmark data)", file=sys.stderr)  # noqa: T201
        subprocess.run(["apt-get", "install", "-y", "-qq", PACKAGE], check=False, stdout=subprocess.DEVNULL)
    if not all((SOURCE / name).exists() for pair in FILES.values() for name in pair):
        raise DatasetUnavailable(
            f"Fashion-MNIST is not installed: expected the files of Debian's '{PACKAGE}' package under {SOURCE}. "
            f"Install it with `sudo apt-get install {PACKAGE}` (run `sudo apt-get update` first if apt cannot find it)"
            " and run the benchmark again."
        )
    return SOURCE


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (the MNIST format: magic, dims, then uint8 data), gzipped."""
    with gzip.open(path) as handle:
        data = handle.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def write_folder(out: Path, limits: dict[str, int] | None = None, size: int = 32) -> Path:
    """Write the labelled folder (idempotent: a complete folder of the same size is kept)."""
    source = ensure_installed()
    limits = limits or {"train": 60000, "val": 10000}
    stamp = out / ".complete"
    expected = f"{limits['train']} {limits['val']} {size}"
    if stamp.exists() and stamp.read_text() == expected:
        return out
    shutil.rmtree(out, ignore_errors=True)
    for split, (image_file, label_file) in FILES.items():
        images, labels = read_idx(source / image_file), read_idx(source / label_file)
        for c in CLASSES:
            (out / split / c).mkdir(parents=True, exist_ok=True)
        for i in range(min(limits[split], len(images))):
            image = Image.fromarray(images[i], "L").resize((size, size), Image.Resampling.BICUBIC)
            image.convert("RGB").save(out / split / CLASSES[labels[i]] / f"{i:05d}.png")
    stamp.write_text(expected)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--train", type=int, default=60000)
    parser.add_argument("--val", type=int, default=10000)
    args = parser.parse_args()
    try:
        print(write_folder(args.out, {"train": args.train, "val": args.val}))  # noqa: T201
    except DatasetUnavailable as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
