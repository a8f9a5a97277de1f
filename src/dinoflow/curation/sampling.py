"""Balanced sampling by hierarchical k-means (Vo et al. 2024, "Automatic Data Curation for
Self-Supervised Learning: A Clustering-Based Approach", §4).

Level 1 clusters the images, each further level clusters the centroids of the level below, so the
top clusters are broad concepts and the bottom ones near-identical views. Sampling walks the tree
from the top: a budget is split as evenly as the cluster sizes allow among the clusters of each
node ("water-filling"), down to the bottom clusters, where images are drawn at random. A concept
that fills half the folder ends with about the same share as every other concept.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import faiss
import numpy as np


def kmeans(points: np.ndarray, k: int, seed: int, iterations: int) -> tuple[np.ndarray, np.ndarray]:
    """faiss k-means: ((k', D) centroids, (N,) cluster of each point), k' = min(k, N)."""
    k = min(k, len(points))
    points = np.ascontiguousarray(points, dtype=np.float32)
    model = faiss.Kmeans(points.shape[1], k, niter=iterations, seed=seed, min_points_per_centroid=1, verbose=False)
    model.train(points)
    _, assignment = model.index.search(points, 1)
    return model.centroids, assignment[:, 0].astype(np.int64)


def hierarchical_kmeans(
    vectors: np.ndarray, levels: Sequence[int], seed: int, iterations: int = 20
) -> list[np.ndarray]:
    """Cluster ids of every image at each level, finest first.

    Args:
        vectors: (N, D) embeddings.
        levels: clusters per level, finest first (e.g. [64, 8]); each level clusters the previous
            level's centroids.

    Returns:
        one (N,) int array per level: the level-l cluster of each image.
    """
    points, per_image, clusters = vectors, np.arange(len(vectors)), []
    for depth, k in enumerate(levels):
        points, assignment = kmeans(points, k, seed + depth, iterations)
        per_image = assignment[per_image]
        clusters.append(per_image)
    return clusters


def water_fill(budget: int, capacities: np.ndarray) -> np.ndarray:
    """Split ``budget`` among bins as evenly as their ``capacities`` allow: small bins are taken
    whole, the rest share what is left. Returns (B,) counts, each ≤ its capacity, summing to
    min(budget, capacities.sum())."""
    take = np.zeros(len(capacities), dtype=np.int64)
    remaining = int(budget)
    order = np.argsort(capacities, kind="stable")
    for position, bin_ in enumerate(order):
        take[bin_] = min(int(capacities[bin_]), math.ceil(remaining / (len(order) - position)))
        remaining -= int(take[bin_])
    return take


def balanced_sample(clusters: Sequence[np.ndarray], target: int, seed: int) -> np.ndarray:
    """Sorted indices of ``target`` images (all of them when fewer) drawn evenly across the tree of
    ``hierarchical_kmeans`` clusters (``clusters``: finest level first)."""
    rng = np.random.default_rng(seed)

    def draw(members: np.ndarray, level: int, budget: int) -> list[np.ndarray]:
        if level < 0:
            return [rng.permutation(members)[:budget]]
        ids, inverse = np.unique(clusters[level][members], return_inverse=True)
        takes = water_fill(budget, np.bincount(inverse, minlength=len(ids)))
        return [part for j, t in enumerate(takes) if t for part in draw(members[inverse == j], level - 1, int(t))]

    if not len(clusters) or not len(clusters[0]):
        return np.arange(0)
    picked = draw(np.arange(len(clusters[0])), len(clusters) - 1, target)
    return np.sort(np.concatenate(picked)) if picked else np.arange(0)


def evenness(sizes: np.ndarray) -> float:
    """Normalised entropy of a cluster-size histogram: 1 when every cluster is the same size,
    0 when one cluster holds everything; empty clusters count (the report's flatness figure)."""
    sizes = np.asarray(sizes, dtype=np.float64)
    if len(sizes) < 2 or sizes.sum() == 0:
        return 1.0
    p = sizes[sizes > 0] / sizes.sum()
    return float(-(p * np.log(p)).sum() / math.log(len(sizes)))
