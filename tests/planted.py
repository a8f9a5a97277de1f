"""Real folders with known near-copies, each with its answer key:

- ``planted_folder``: generated images of 4 shape classes with a skewed class distribution
  (48 / 24 / 12 / 12 training images);
- ``demo_look_folder``: the embedded demo data's own look (``data.synthetic`` in conf/base: light
  objects of random hues on darker grounds, which look alike in grey thumbnails), 10 classes of
  60 training and 20 val images.

Both get near-copies of 24 training images (6 of each kind) and near-copies of 8 validation images
planted in training."""

from pathlib import Path

import yaml

from dinoflow.curation.planted import COPY_KINDS, plant_copies
from dinoflow.data.synthetic import SyntheticSpec, generate
from tests.project_copy import PROJECT_ROOT

CLASS_SIZES = (48, 24, 12, 12)


def _plant(root: Path, train: list[str]) -> dict:
    """Near-copies of every 4th of ``train`` (24) and of every 4th val image (8, into training)."""
    originals = train[::4][:24]
    copies = plant_copies(root, originals, [COPY_KINDS[i % 4] for i in range(24)], seed=0)
    val = sorted(p.relative_to(root).as_posix() for p in (root / "images" / "val").rglob("*.png"))[::4][:8]
    val_copies = []
    for i, original in enumerate(val):  # each into the training folder of its own class
        target = f"images/train/{Path(original).parent.name}"
        val_copies += plant_copies(root, [original], [COPY_KINDS[i % 4]], seed=100 + i, target_dir=target)
    return {"root": root, "copies": copies, "val_copies": val_copies, "distinct_train": len(train)}


def planted_folder(root: Path) -> dict:
    spec = SyntheticSpec(num_classes=4, train_per_class=max(CLASS_SIZES), val_per_class=8, image_size=32,
                         clutter_strokes=2, texture_strength=0.3, background_noise=0.04, seed=11)  # fmt: skip
    generate(spec, root)
    train = sorted((root / "images" / "train").iterdir())
    kept = []
    for folder, size in zip(train, CLASS_SIZES, strict=True):
        files = sorted(folder.glob("*.png"))
        for extra in files[size:]:
            extra.unlink()
            (root / "masks" / "train" / folder.name / extra.name).unlink()
        kept += [f.relative_to(root).as_posix() for f in files[:size]]
    return _plant(root, kept)


def demo_look_folder(root: Path) -> dict:
    demo = yaml.safe_load((PROJECT_ROOT / "conf/base/parameters_data_ingestion.yml").read_text())["data"]["synthetic"]
    generate(SyntheticSpec(**{**demo, "train_per_class": 60, "val_per_class": 20}), root)
    train = sorted(p.relative_to(root).as_posix() for p in (root / "images" / "train").rglob("*.png"))
    return _plant(root, train)
