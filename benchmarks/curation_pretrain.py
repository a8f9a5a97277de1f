"""Pretraining on curated vs uncurated data at the same time budget (``curation.py --pretrain``).

Two folders of the demo generator's shapes (64 px, demo settings), val balanced in both:

- ``bursts`` (default): 150 distinct training images per class, and near-copies (re-encoded,
  resized, cropped or colour-cast) of 8 images of each of the two first classes, as many as make
  ``duplicate_share`` of the folder (default 0.9), as in folders filled from video frames, burst
  shots or re-posted pictures. Arms: as is, and deduplicated (``curation.enabled=true``).
- ``photo-bursts``: the same bursts on 4,000 Fashion-MNIST training photos (2,000 val), where a
  small backbone learns more in minutes than on the shapes. A third arm deduplicates with the
  whitened pixel embedding (``curation.whitening``), which keeps the distinct garments.
- ``skewed``: class sizes halving from 480 down to 60, and one near-copy of every training image
  of the two largest classes. Arms: as is, deduplicated, and deduplicated then balanced-sampled to
  ``SAMPLED_SHARE`` of what is left.

Each seed runs ``kedro run`` with the ``small`` preset and the same training budget per arm. Every
teacher is then scored with the evaluate node's k-NN against the same memory bank (the uncurated
training split, as packed by the first run) and the same val split, so the figures compare
backbones, not k-NN banks.
"""

from __future__ import annotations

import shutil
import statistics
from pathlib import Path

from dinoflow.curation.planted import COPY_KINDS, plant_copies
from dinoflow.data.synthetic import SyntheticSpec, generate
from dinoflow.eval.suite import EvalSettings
from dinoflow.train.builders import load_backbone
from e2e import fresh_clone
from fashion_mnist import write_folder
from quality import run_pipeline
from quality_common import DEMO_DATA, score_on

CLASS_SIZES = (480, 240, 120, 60, 60, 60, 60, 60)
SAMPLED_SHARE = 0.6
PHOTOS = {"train": 4000, "val": 2000}
BURST_CLASSES, BURST_IMAGES_PER_CLASS, DISTINCT_PER_CLASS = 2, 8, 150


def _generated_folder(root: Path, train_per_class: int, val_per_class: int, seed: int) -> Path:
    # the demo data's look, with this scenario's classes and counts
    spec = SyntheticSpec(**{**DEMO_DATA, "num_classes": len(CLASS_SIZES), "train_per_class": train_per_class,
                            "val_per_class": val_per_class, "seed": seed})  # fmt: skip
    generate(spec, root / "generated")
    folder = root / "folder"
    shutil.copytree(root / "generated" / "images", folder)  # images only: a plain labelled folder
    return folder


def _plant_bursts(folder: Path, distinct: int, duplicate_share: float, seed: int) -> dict:
    """Near-copies of ``BURST_IMAGES_PER_CLASS`` training images of each of the first
    ``BURST_CLASSES`` classes, as many as make ``duplicate_share`` of the training images."""
    bursts = [f.relative_to(folder).as_posix() for class_dir in sorted((folder / "train").iterdir())[:BURST_CLASSES]
              for f in sorted(class_dir.glob("*.png"))[:BURST_IMAGES_PER_CLASS]]  # fmt: skip
    copies_per_image = round(distinct * duplicate_share / (1 - duplicate_share) / len(bursts))
    copied = [original for original in bursts for _ in range(copies_per_image)]
    plant_copies(folder, copied, [COPY_KINDS[i % 4] for i in range(len(copied))], seed)
    return {"folder": folder, "train_images": distinct + len(copied), "distinct_train_images": distinct,
            "planted_copies": len(copied), "copied_images": len(bursts),
            "duplicate_share": duplicate_share}  # fmt: skip


def burst_duplicated_folder(root: Path, seed: int = 0, duplicate_share: float = 0.9) -> dict:
    folder = _generated_folder(root, DISTINCT_PER_CLASS, 100, seed)
    return _plant_bursts(folder, DISTINCT_PER_CLASS * len(CLASS_SIZES), duplicate_share, seed)


def photo_burst_folder(root: Path, seed: int = 0, duplicate_share: float = 0.9) -> dict:
    """The bursts on real photos: the first ``PHOTOS`` of Fashion-MNIST (32 px), where a backbone
    learns far more in minutes than on the generated shapes, so a loss of diversity can show."""
    folder = write_folder(root / "folder", PHOTOS)
    return {**_plant_bursts(folder, PHOTOS["train"], duplicate_share, seed), "source": "fashion-mnist"}


def skewed_duplicated_folder(root: Path, seed: int = 0) -> dict:
    folder = _generated_folder(root, max(CLASS_SIZES), 50, seed)
    copied = []
    for class_dir, size in zip(sorted((folder / "train").iterdir()), CLASS_SIZES, strict=True):
        files = sorted(class_dir.glob("*.png"))
        for extra in files[size:]:
            extra.unlink()
        if size >= CLASS_SIZES[1]:
            copied += [f.relative_to(folder).as_posix() for f in files[:size]]
    plant_copies(folder, copied, [COPY_KINDS[i % 4] for i in range(len(copied))], seed)
    return {"folder": folder, "train_images": sum(CLASS_SIZES) + len(copied), "planted_copies": len(copied),
            "class_sizes": CLASS_SIZES, "sampled_share": SAMPLED_SHARE}  # fmt: skip


# The copies make two classes up to 40 times larger than the others: the validation gate would stop the
# uncurated run (validation.max_class_imbalance), so it is relaxed in both arms alike.
RELAXED = "validation.max_class_imbalance=1000"
# The settings the README gives for look-alike objects: 16 px grey thumbnails in the folder's whitened basis.
# (at the default thresholds of 0.97)
WHITENED = ["curation.thumbnail=16", "curation.colour=false", "curation.whitening=0.01"]
SCENARIOS = {
    "bursts": (burst_duplicated_folder, {"uncurated": [RELAXED], "deduplicated": [RELAXED, "curation.enabled=true"]}),
    "photo-bursts": (photo_burst_folder, {"uncurated": [RELAXED],
                                          "deduplicated": [RELAXED, "curation.enabled=true"],
                                          "deduplicated, whitened": [RELAXED, "curation.enabled=true", *WHITENED]}),
    "skewed": (skewed_duplicated_folder, {"uncurated": [], "deduplicated": ["curation.enabled=true"],
               "deduplicated + sampled": ["curation.enabled=true", f"curation.sampling.target_share={SAMPLED_SHARE}"]}),
}  # fmt: skip


def compare(
    tmp: Path,
    minutes: float,
    seeds: list[int],
    scenario: str = "bursts",
    only: list[str] | None = None,
    overrides: tuple[str, ...] = (),
    **folder_args,
) -> dict:
    """Each seed trains every arm of ``scenario`` (or the ``only`` ones; "uncurated" always runs: the
    gains are against it) with ``overrides`` (``key=value``, e.g. the recipe) added to every arm."""
    make_folder, arms = SCENARIOS[scenario]
    unknown = sorted(set(only or ()) - set(arms))
    if unknown:  # before any folder is built: a misspelt arm would otherwise train the uncurated one alone
        raise SystemExit(f"--arms: {unknown} are not arms of --scenario {scenario}; its arms are {sorted(arms)}")
    arms = {
        name: [*params, *overrides] for name, params in arms.items() if name == "uncurated" or not only or name in only
    }
    data = make_folder(tmp / scenario, **folder_args)
    project = fresh_clone(tmp / "project")
    runs, bank = {name: [] for name in arms}, tmp / "uncurated_dataset"
    for seed in seeds:
        for name, params in arms.items():
            run = run_pipeline(project, data["folder"], minutes, seed, params)
            if not bank.exists():
                shutil.copytree(project / "data" / "05_model_input" / "dataset", bank)
            backbone, cfg = load_backbone(Path(run["config"]).parent)
            same_bank = score_on(backbone, bank, EvalSettings(image_size=cfg.crops.global_size))["knn_top1"]
            # The step times show when one arm got more steps from the same minutes (the count is
            # calibrated on each run's first steps), which would confound the comparison.
            keys = ("seed", "knn_top1", "knn_top1_random_init", "iterations", "images_seen", "seconds_per_iteration",
                    "calibrated_seconds_per_iteration")  # fmt: skip
            runs[name].append({**{k: run[k] for k in keys}, "knn_top1_uncurated_bank": same_bank})
            print(f"seed {seed} {name}: k-NN {same_bank:.3f} on the uncurated bank, {run['knn_top1']:.3f} on its own "
                  f"({run['iterations']} iterations, {run['seconds_per_iteration']:.3f} s each)")  # fmt: skip
    base = [u["knn_top1_uncurated_bank"] for u in runs["uncurated"]]
    gains = {name: [c["knn_top1_uncurated_bank"] - b for c, b in zip(runs[name], base, strict=True)]
             for name in arms if name != "uncurated"}  # fmt: skip
    return {"scenario": scenario, "folder": {k: v for k, v in data.items() if k != "folder"}, "minutes": minutes, "overrides": list(overrides), "runs": runs, "gain_per_seed": gains,
            "mean_gain": {name: statistics.mean(g) for name, g in gains.items()}}  # fmt: skip
