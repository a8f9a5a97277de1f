"""Curation quality: how many planted near-copies each embedding finds, at what cost in distinct
images removed, and whether pretraining on the curated set beats the uncurated one at equal budget.

1. Detection (seconds): three folders — the embedded generator's shapes (32 px, its default
   look), the demo data (the generator as ``data.synthetic`` sets it: 64 px, light objects on
   darker grounds; distinct images look alike in grey) and Fashion-MNIST photos (Debian's
   dataset-fashion-mnist; skipped with the reason when it cannot be installed) —
   get planted near-copies of 10% of their training images (re-encoded JPEG, resized, small crop,
   small colour cast; equal shares) and copies of 5% of their val images placed in training. For
   the pixel embedding with and without crop variants, the 16 px grey one whitened (``curation.whitening``),
   a random-init backbone (the demo preset's ViT) and, with ``--backbone <run folder>``, a trained one (on the photos), over a grid of thresholds: share of planted copies removed per kind, share of
   distinct images removed, share of planted val copies removed.
   Also, at the full view size (no embedding), how close each distinct image's nearest distinct
   look-alike is, and each planted copy to its original (``full_size_agreement``).
2. ``--pretrain``: a duplicated generated set trained through ``kedro run`` with and without
   ``curation.enabled`` at the same time budget, k-NN on the same val split, per seed.
   ``--scenario bursts`` (default): 90% of the folder (``--duplicate-share``) is near-copies of 16
   images; ``photo-bursts``: the same on 4,000 Fashion-MNIST photos; ``skewed``: class sizes 8:4:2:1:..., every image of the big classes copied once more
   (``curation_pretrain.py``).

3. ``--scale``: embeddings → curation decisions for N = 10k, 100k and 1M random embeddings (64
   dims, 16 variants each as the pixel embedding has, 1% planted copies, 10% val), balanced
   sampling to half; wall time and peak memory, each N in its own process.

    python benchmarks/curation.py [--backbone RUN] [--pretrain] [--scenario bursts|photo-bursts|skewed]
        [--minutes 2] [--seeds 0 1] [--arms NAME ...] [--scale] [key=value ...]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from dinoflow.config import resolve_config
from dinoflow.curation.curate import NEAR_DUPLICATE, VAL_NEAR_COPY, CurationSettings, curate
from dinoflow.curation.duplicates import near_duplicate_groups
from dinoflow.curation.embeddings import (
    backbone_embeddings,
    crop_variants,
    load_view,
    pixel_embedding,
    pixel_embeddings,
    whiten,
)
from dinoflow.curation.planted import COPY_KINDS, plant_copies
from dinoflow.data.manifest import build_manifest
from dinoflow.data.synthetic import SyntheticSpec, generate
from dinoflow.train.builders import build_backbone_from_config, load_backbone

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fashion_mnist import DatasetUnavailable, write_folder  # noqa: E402
from quality_common import DEMO_DATA, PARAMS, RESULTS, in_own_process, machine  # noqa: E402

THRESHOLDS = (0.85, 0.9, 0.93, 0.95, 0.96, 0.965, 0.97, 0.98, 0.99, 0.995)
WHITENED_SHRINKAGE = 0.01  # curation.whitening as the README suggests it for look-alike objects (grey)


def plant(root: Path, seed: int) -> dict:
    """Near-copies of 10% of the training images and of 5% of the val images (into training)."""
    rng = np.random.default_rng(seed)
    train = sorted(p.relative_to(root).as_posix() for p in root.glob("**/train/**/*.png"))
    val = sorted(p.relative_to(root).as_posix() for p in root.glob("**/val/**/*.png"))
    originals = list(rng.choice(train, size=len(train) // 10, replace=False))
    copies = plant_copies(root, originals, [COPY_KINDS[i % 4] for i in range(len(originals))], seed)
    val_copies = []
    for i, original in enumerate(rng.choice(val, size=max(1, len(val) // 20), replace=False)):
        parts = Path(original).parent.parts  # .../val/<class> → .../train/<class>
        target = Path(*parts[: parts.index("val")], "train", *parts[parts.index("val") + 1 :]).as_posix()
        val_copies += plant_copies(root, [original], [COPY_KINDS[i % 4]], seed + 1 + i, target_dir=target)
    return {"copies": copies, "val_copies": val_copies, "distinct_train": len(train)}


def score(frame: pd.DataFrame, vectors: np.ndarray, planted: dict, threshold: float) -> dict:
    result = curate(
        frame, vectors, CurationSettings(duplicate_threshold=threshold, decontamination_threshold=threshold)
    )
    gone = set(result.removed.loc[result.removed["reason"] == NEAR_DUPLICATE, "path"])
    decontaminated = set(result.removed.loc[result.removed["reason"] == VAL_NEAR_COPY, "path"])
    involved = {p for c in planted["copies"] for p in (c.copy, c.original)} | {c.copy for c in planted["val_copies"]}
    per_kind = {}
    for kind in COPY_KINDS:
        pairs = [c for c in planted["copies"] if c.kind == kind]
        per_kind[kind] = round(sum(c.copy in gone or c.original in gone for c in pairs) / len(pairs), 4)
    val_copies = {c.copy for c in planted["val_copies"]}  # out of training, as a val copy or as a duplicate
    return {
        "threshold": threshold,
        "copies_removed": round(sum(c.copy in gone or c.original in gone for c in planted["copies"]) / len(planted["copies"]), 4),
        "copies_removed_by_kind": per_kind,
        "distinct_removed": round(len((gone | decontaminated) - involved) / planted["distinct_train"], 5),
        "val_copies_removed": round(len(val_copies & (gone | decontaminated)) / len(val_copies), 4),
        "val_copies_removed_as_val_copies": round(len(val_copies & decontaminated) / len(val_copies), 4),
    }  # fmt: skip


def embeddings(frame: pd.DataFrame, root: Path, trained: Path | None = None) -> dict[str, tuple[np.ndarray, float]]:
    """name → ((N, V, D) vectors, seconds); with ``trained`` (a run folder), its teacher's too."""
    paths = [root / p for p in frame["path"]]
    out = {}
    for name, tolerance in (("pixels, crop variants (default)", 0.06), ("pixels, plain view only", 0.0)):
        started = time.perf_counter()
        out[name] = (pixel_embeddings(paths, size=32, tolerance=tolerance, workers=2), time.perf_counter() - started)
    started = time.perf_counter()
    vectors = whiten(pixel_embeddings(paths, size=32, thumbnail=16, colour=False, workers=2), WHITENED_SHRINKAGE)
    out[f"pixels 16 px grey, crop variants, whitened ({WHITENED_SHRINKAGE})"] = (vectors, time.perf_counter() - started)
    demo = resolve_config({"preset": "demo"}, yaml.safe_load(PARAMS.read_text())["pretrain_presets"])
    started = time.perf_counter()
    backbone = build_backbone_from_config(demo, drop_path=False)
    out["random-init backbone (demo ViT)"] = (backbone_embeddings(backbone, paths, 32), time.perf_counter() - started)
    if trained is not None:
        started = time.perf_counter()
        backbone, cfg = load_backbone(trained)
        vectors = backbone_embeddings(backbone, paths, cfg.crops.global_size)
        out[f"trained backbone ({trained.name})"] = (vectors, time.perf_counter() - started)
    return out


def full_size_agreement(frame: pd.DataFrame, root: Path, planted: dict) -> dict:
    """How alike images are at the full view size (the pixel embedding with no blur at 32 px: for
    grey photos the cosine is the pixels' Pearson correlation), for what no threshold on a pixel
    embedding can get past: each distinct training image's closest other distinct image, and each planted copy
    against its original at the best of either one's crop variants (as the curation search aligns
    them)."""
    train = frame.loc[frame["split"] == "train", "path"].tolist()
    pairs = {p for c in planted["copies"] for p in (c.copy, c.original)}
    planted_files = pairs | {c.copy for c in planted["val_copies"]}
    distinct = [p for p in train if p not in planted_files]
    views = {p: load_view(root / p, 32) for p in {*distinct, *pairs}}
    plain = torch.stack([pixel_embedding(views[p], 32, blur_sigma=0) for p in distinct]).numpy()
    groups = near_duplicate_groups(plain[:, None], threshold=0.99)  # the search curation runs, plain views only

    def aligned(a: str, b: str) -> float:
        va, vb = (pixel_embedding(crop_variants(views[p], 0.06), 32, blur_sigma=0) for p in (a, b))
        return float(max((va @ vb[0]).max(), (vb @ va[0]).max()))

    per_kind = {kind: [aligned(c.copy, c.original) for c in planted["copies"] if c.kind == kind] for kind in COPY_KINDS}
    return {
        "distinct_images": len(distinct),
        "distinct_groups_at_0.99_or_more": [len(g) for g in groups.members()],
        "distinct_closest_percentiles_50_90_99": np.percentile(groups.best_match, [50, 90, 99]).round(4).tolist(),
        "copies_min_median_by_kind": {
            k: [round(min(v), 4), round(float(np.median(v)), 4)] for k, v in per_kind.items()
        },
    }


def detection(name: str, root: Path, seed: int, trained: Path | None = None) -> dict:
    planted = plant(root, seed)
    frame = pd.DataFrame([r for r in build_manifest(root, progress=False) if r["status"] == "ok"])
    report = {"folder": name, "images": len(frame), "planted_copies": len(planted["copies"]),
              "planted_val_copies": len(planted["val_copies"]), "embeddings": {}}  # fmt: skip
    report["full_size_agreement"] = agreement = full_size_agreement(frame, root, planted)
    print(f"\n{name}: at full size, groups of distinct training images at 0.99 or more: "
          f"{agreement['distinct_groups_at_0.99_or_more']} (closest-other percentiles 50/90/99: {agreement['distinct_closest_percentiles_50_90_99']}); "
          f"planted copies vs their originals, min / median by kind: {agreement['copies_min_median_by_kind']}")  # fmt: skip
    for embedding, (vectors, seconds) in embeddings(frame, root, trained).items():
        grid = [score(frame, vectors, planted, t) for t in THRESHOLDS]
        report["embeddings"][embedding] = {"embed_seconds": round(seconds, 1), "grid": grid}
        print(f"\n{name}: {embedding} ({seconds:.1f} s)")
        print(
            "  threshold  copies removed (jpeg/resize/crop/colour)   distinct removed  val copies removed (any reason)"
        )
        for g in grid:
            kinds = "/".join(f"{v:.2f}" for v in g["copies_removed_by_kind"].values())
            print(
                f"  {g['threshold']:.3f}       {g['copies_removed']:.3f} ({kinds})    {g['distinct_removed']:.4f}            {g['val_copies_removed']:.3f}"
            )
    return report


def scale_point(n: int, variants: int = 16, dim: int = 64) -> dict:
    """Time and peak memory of ``curate`` on n random unit embeddings with 1% planted copies."""
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((n, variants, dim), dtype=np.float32)
    copies = rng.choice(n, size=n // 100, replace=False)
    vectors[copies] = vectors[(copies + 1) % n] + 0.02 * rng.standard_normal(
        (len(copies), variants, dim), dtype=np.float32
    )
    vectors /= np.linalg.norm(vectors, axis=2, keepdims=True)
    frame = pd.DataFrame({"path": [f"{i:07d}.png" for i in range(n)], "split": np.where(rng.random(n) < 0.1, "val", "train"),
                          "label": "", "width": 32, "height": 32})  # fmt: skip
    started = time.perf_counter()
    result = curate(frame, vectors, CurationSettings(target_share=0.5))
    seconds = time.perf_counter() - started
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return {"n": n, "seconds": round(seconds, 1), "peak_memory_gb": round(peak_gb, 2), "removed": result.report["removed"],
            "planted_copies": len(copies), "embeddings_gb": round(vectors.nbytes / 2**30, 2)}  # fmt: skip


def scaling(sizes: list[int]) -> list[dict]:
    points = []
    for n in sizes:
        p = in_own_process(__file__, "--scale-one", n)
        points.append(p)
        if "failed" in p:
            continue
        print(
            f"N = {n:,}: {p['seconds']} s, peak {p['peak_memory_gb']} GB (embeddings {p['embeddings_gb']} GB), removed {p['removed']}"
        )
    return points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pretrain", action="store_true", help="also pretrain on curated vs uncurated data")
    parser.add_argument(
        "--scenario", choices=["bursts", "photo-bursts", "skewed"], default="bursts", help="the --pretrain folder"
    )
    parser.add_argument("--duplicate-share", type=float, default=0.9, help="bursts scenarios: copies' share")
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--backbone", type=Path, help="also embed the photos with this run folder's teacher")
    parser.add_argument("--scale", action="store_true", help="time and memory for 10k, 100k and 1M embeddings")
    parser.add_argument("--scale-one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--arms", nargs="+", help="--pretrain: only these arms besides 'uncurated' (default: all)")
    parser.add_argument("--out", type=Path, default=RESULTS / "curation.json")
    parser.add_argument(
        "overrides", nargs="*", help="--pretrain: key=value added to every arm, e.g. pretrain.loss.koleo_weight=0"
    )
    args = parser.parse_args()
    if args.scale_one:
        print(json.dumps(scale_point(args.scale_one)))
        return
    if args.scale:
        report = {"machine": machine(), "scaling": scaling([10_000, 100_000, 1_000_000])}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))
        print(f"wrote {args.out}")
        return
    torch.manual_seed(args.seed)
    results = {"machine": machine(), "seed": args.seed, "detection": []}
    with tempfile.TemporaryDirectory() as tmp:
        shapes = Path(tmp) / "shapes"
        generate(
            SyntheticSpec(num_classes=10, train_per_class=200, val_per_class=50, image_size=32, seed=args.seed), shapes
        )
        shutil.rmtree(shapes / "masks")  # planted copies have no mask: keep the folder uniform
        results["detection"].append(detection("generated shapes, 2,000 + 500", shapes, args.seed))
        demo = Path(tmp) / "demo"
        generate(SyntheticSpec(**{**DEMO_DATA, "seed": args.seed}), demo)  # the embedded demo data at seed 0
        shutil.rmtree(demo / "masks")
        results["detection"].append(detection("demo data (data.synthetic), 3,000 + 1,000", demo, args.seed))
        try:
            photos = write_folder(Path(tmp) / "fashion-mnist", {"train": 5000, "val": 1000})
            results["detection"].append(
                detection("Fashion-MNIST photos, 5,000 + 1,000", photos, args.seed, args.backbone)
            )
        except DatasetUnavailable as err:
            print(f"Fashion-MNIST skipped: {err}")
            results["fashion_mnist_skipped"] = str(err)
        if args.pretrain:
            from curation_pretrain import compare  # noqa: PLC0415

            results["pretrain"] = compare(
                Path(tmp),
                args.minutes,
                args.seeds,
                args.scenario,
                args.arms,
                tuple(args.overrides),
                **({"duplicate_share": args.duplicate_share} if args.scenario.endswith("bursts") else {}),
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
