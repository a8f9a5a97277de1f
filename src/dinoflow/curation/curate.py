"""What curation decides, given the validated manifest and one embedding per row: which training
images go (and why), which stay, and the figures of the report. Nothing is deleted from disk; the
removed rows are listed with their reason. The evaluation split is never changed.

Order (DINOv2 §3): near-duplicates within training → training images that are near-copies of an
evaluation image → balanced sampling of what is left (``sampling.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from dinoflow.curation.duplicates import closest_reference, near_duplicate_groups, representatives
from dinoflow.curation.sampling import balanced_sample, evenness, hierarchical_kmeans

NEAR_DUPLICATE = "near-duplicate"
VAL_NEAR_COPY = "near-copy of a val image"
SAMPLED_OUT = "balanced sampling"
REASONS = {"near_duplicate": NEAR_DUPLICATE, "val_near_copy": VAL_NEAR_COPY, "balanced_sampling": SAMPLED_OUT}
REPRESENTATIVE_RULE = "the copy with the most pixels (re-encodes and crops lose pixels); ties: manifest order"


@dataclass(frozen=True)
class CurationSettings:
    """The decision rules (``curation.*`` parameters, as plain values)."""

    duplicate_threshold: float = 0.97  # cosine similarity at or above which two images are copies
    neighbours: int = 16  # k of the k-NN graph
    decontamination_threshold: float = 0.97  # train images this close to a val image are removed
    levels: tuple[int, ...] = (64, 8)  # hierarchical k-means clusters per level, finest first
    target_size: int | None = None  # training images kept by sampling (overrides target_share)
    target_share: float | None = None  # share of the deduplicated training images kept; None: no sampling
    kmeans_iterations: int = 20
    seed: int = 0


@dataclass
class Curation:
    """kept: (N,) bool over the manifest rows; removed: path, split, reason, detail, similarity (to the kept copy's group / the val image);
    groups: row-index arrays of each near-duplicate group (kept row first); clusters: per level,
    (N,) cluster id of each row sampled over (-1 elsewhere), before sampling."""

    kept: np.ndarray
    removed: pd.DataFrame
    report: dict
    groups: list[np.ndarray] = field(default_factory=list)
    clusters: list[np.ndarray] = field(default_factory=list)


def _removal(
    frame: pd.DataFrame, rows: np.ndarray, reason: str, details: list[str], similarity: np.ndarray
) -> pd.DataFrame:
    return pd.DataFrame({"path": frame["path"].to_numpy()[rows], "split": frame["split"].to_numpy()[rows],
                         "reason": reason, "detail": details, "similarity": np.round(similarity, 4)})  # fmt: skip


def _deduplicate(frame: pd.DataFrame, vectors: np.ndarray, train: np.ndarray, settings: CurationSettings):
    groups = near_duplicate_groups(vectors[train], settings.duplicate_threshold, settings.neighbours)
    pixels = (frame["width"].to_numpy() * frame["height"].to_numpy())[train]
    keep = representatives(groups, pixels)
    paths = frame["path"].to_numpy()
    ordered, details, gone, similarity = [], [], [], []
    for members in groups.members():
        kept_member = members[keep[members]][0]
        ordered.append(train[np.concatenate([[kept_member], members[members != kept_member]])])
        for m in members[members != kept_member]:
            details.append(f"kept {paths[train[kept_member]]}")
            gone.append(train[m])
            similarity.append(float(groups.best_match[m]))
    removed = _removal(frame, np.array(gone, dtype=np.int64), NEAR_DUPLICATE, details, np.array(similarity))
    return train[keep], removed, ordered


def _decontaminate(frame: pd.DataFrame, vectors: np.ndarray, train: np.ndarray, val: np.ndarray, threshold: float):
    similarity, nearest = closest_reference(vectors[train], vectors[val])
    hit = similarity >= threshold
    paths = frame["path"].to_numpy()
    details = [f"val {paths[val[j]]}" for j in nearest[hit]]
    return train[~hit], _removal(frame, train[hit], VAL_NEAR_COPY, details, similarity[hit])


def _sample(frame: pd.DataFrame, vectors: np.ndarray, train: np.ndarray, settings: CurationSettings):
    target = settings.target_size if settings.target_size is not None else round(settings.target_share * len(train))
    clusters = hierarchical_kmeans(vectors[train, 0], settings.levels, settings.seed, settings.kmeans_iterations)
    picked = balanced_sample(clusters, target, settings.seed)
    chosen = np.zeros(len(train), dtype=bool)
    chosen[picked] = True
    finest = clusters[0]
    details = [f"cluster {c} of level 1" for c in finest[~chosen]]
    removed = _removal(frame, train[~chosen], SAMPLED_OUT, details, np.full((~chosen).sum(), np.nan))
    per_row = [np.full(len(frame), -1, dtype=np.int64) for _ in clusters]
    for full, level in zip(per_row, clusters, strict=True):
        full[train] = level
    report = {"target": int(target), "levels": [_level_sizes(level, chosen) for level in clusters]}
    return train[chosen], removed, per_row, report


def _level_sizes(level: np.ndarray, chosen: np.ndarray) -> dict:
    """Cluster sizes of one level before and after sampling, with their evenness."""
    before = np.bincount(level)
    after = np.bincount(level[chosen], minlength=len(before))
    return {"clusters": len(before), "sizes_before": before.tolist(), "sizes_after": after.tolist(),
            "evenness_before": round(evenness(before), 4), "evenness_after": round(evenness(after), 4)}  # fmt: skip


def _label_counts(frame: pd.DataFrame, rows: np.ndarray) -> dict[str, int]:
    labels = frame["label"].to_numpy()[rows]
    return {str(k): int(v) for k, v in sorted(pd.Series(labels).value_counts().items())} if len(rows) else {}


def curate(frame: pd.DataFrame, vectors: np.ndarray, settings: CurationSettings) -> Curation:
    """Decide which rows of ``frame`` (the validated manifest: path, split, label, width, height)
    stay, given ``vectors`` (N, V, D) unit embeddings aligned with its rows (``embeddings``: V
    variants per image, the plain view first; sampling clusters the plain views)."""
    if len(frame) != len(vectors):
        raise ValueError(f"curation needs one embedding per manifest row: {len(vectors)} for {len(frame)} rows")
    split = frame["split"].to_numpy()
    train, val = np.flatnonzero(split == "train"), np.flatnonzero(split != "train")
    deduplicated, near_dups, groups = _deduplicate(frame, vectors, train, settings)
    clean_train, copies = _decontaminate(frame, vectors, deduplicated, val, settings.decontamination_threshold)
    parts, clusters, sampling = [near_dups, copies], [], None
    final_train = clean_train
    if len(clean_train) and (settings.target_size is not None or settings.target_share is not None):
        final_train, sampled_out, clusters, sampling = _sample(frame, vectors, clean_train, settings)
        parts.append(sampled_out)
    kept = np.zeros(len(frame), dtype=bool)
    kept[val] = True
    kept[final_train] = True
    removed = pd.concat(parts, ignore_index=True)
    report = {
        "images_in": {"train": len(train), "val": len(val)},
        "images_out": {"train": len(final_train), "val": len(val)},
        "removed": {key: int((removed["reason"] == reason).sum()) for key, reason in REASONS.items()},
        "near_duplicate_groups": len(groups),
        "largest_group": max((len(g) for g in groups), default=1),
        "representative_rule": REPRESENTATIVE_RULE,
        "thresholds": {"duplicate": settings.duplicate_threshold, "decontamination": settings.decontamination_threshold},
        "labels_before": _label_counts(frame, train),
        "labels_after": _label_counts(frame, final_train),
        "sampling": sampling,
    }  # fmt: skip
    return Curation(kept, removed, report, groups, clusters)
