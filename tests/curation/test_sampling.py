"""Hierarchical k-means and balanced sampling against hand-computed values (Vo et al. 2024, §4)."""

import math

import numpy as np
import pytest

from dinoflow.curation.sampling import balanced_sample, evenness, hierarchical_kmeans, water_fill


@pytest.mark.parametrize(
    ("budget", "capacities", "expected"),
    [
        (10, [2, 5, 100], [2, 4, 4]),  # the small bin is taken whole, the others share the rest
        (100, [3, 4], [3, 4]),  # more budget than images: everything
        (6, [9, 9, 9], [2, 2, 2]),
        (0, [5, 5], [0, 0]),
    ],
)
def test_water_fill_splits_evenly_within_capacities(budget, capacities, expected):
    assert water_fill(budget, np.array(capacities)).tolist() == expected


def test_evenness_is_the_normalised_entropy_of_the_sizes():
    assert evenness(np.array([5, 5, 5, 5])) == pytest.approx(1.0)
    assert evenness(np.array([10, 0])) == pytest.approx(0.0)
    assert evenness(np.array([3, 1])) == pytest.approx(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)) / math.log(2))


def test_balanced_sample_walks_the_tree_evenly():
    # 2 top clusters; top 0 holds fine clusters 0 (60 images) and 1 (20), top 1 holds fine 2 (20).
    fine = np.array([0] * 60 + [1] * 20 + [2] * 20)
    top = np.array([0] * 80 + [1] * 20)
    picked = balanced_sample([fine, top], target=30, seed=0)
    assert len(picked) == 30 and len(set(picked.tolist())) == 30
    # 15 per top cluster; inside top 0, 15 split as evenly as possible between fine 0 and fine 1.
    assert np.bincount(top[picked]).tolist() == [15, 15]
    # (ceil goes to the smaller bin first: fine 1 gets ceil(15 / 2) = 8, fine 0 the other 7)
    assert np.bincount(fine[picked]).tolist() == [7, 8, 15]


def blobs(sizes, dim=8, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.eye(dim)[: len(sizes)] * 10
    points = np.concatenate([c + rng.normal(0, 0.1, (n, dim)) for c, n in zip(centres, sizes, strict=True)])
    return points.astype(np.float32), np.repeat(np.arange(len(sizes)), sizes)


def test_hierarchical_kmeans_finds_separated_blobs_and_sampling_flattens_them():
    points, truth = blobs([300, 30, 30])
    fine, coarse = hierarchical_kmeans(points, levels=[6, 3], seed=0)
    # every blob is one coarse cluster (a bijection between blobs and clusters)
    assert len({(t, c) for t, c in zip(truth, coarse, strict=True)}) == 3 and len(set(coarse.tolist())) == 3
    picked = balanced_sample([fine, coarse], target=60, seed=0)
    assert np.bincount(truth[picked]).tolist() == [20, 20, 20]
    assert evenness(np.bincount(truth[picked])) > evenness(np.bincount(truth)) + 0.3


def test_same_inputs_and_seed_give_the_same_clusters_and_sample():
    points, _ = blobs([200, 50, 20, 10], seed=1)
    first = hierarchical_kmeans(points, [10, 4], seed=3)
    second = hierarchical_kmeans(points, [10, 4], seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    assert np.array_equal(balanced_sample(first, 50, seed=3), balanced_sample(second, 50, seed=3))


def test_more_clusters_than_points_is_capped():
    points, _ = blobs([3, 2])
    (fine,) = hierarchical_kmeans(points, [64], seed=0)
    assert fine.max() < 5
