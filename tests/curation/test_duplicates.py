"""Near-duplicate groups, representatives and decontamination on hand-made unit vectors."""

import numpy as np
import pytest

from dinoflow.curation.duplicates import closest_reference, near_duplicate_groups, representatives


def unit(*rows):
    """(N, 1, D): one variant (the plain view) per image."""
    v = np.array(rows, dtype=np.float32)
    return (v / np.linalg.norm(v, axis=1, keepdims=True))[:, None]


def angle(degrees):
    r = np.radians(degrees)
    return [np.cos(r), np.sin(r), 0.0]


def test_components_follow_chains_of_close_pairs():
    # a-b at 10°, b-c at 10° (a-c at 20°), d far away; threshold cos 15° joins a-b and b-c only.
    vectors = unit(angle(0), angle(10), angle(20), [0, 0, 1])
    groups = near_duplicate_groups(vectors, threshold=float(np.cos(np.radians(15))), neighbours=3)
    assert [g.tolist() for g in groups.members()] == [[0, 1, 2]]
    assert groups.component[3] not in groups.component[:3]
    assert groups.best_match[0] == pytest.approx(np.cos(np.radians(10)), abs=1e-5)
    assert groups.best_match[3] == pytest.approx(0.0, abs=1e-6)  # orthogonal to all three


def test_representative_is_the_copy_with_most_pixels_then_manifest_order():
    vectors = unit(angle(0), angle(1), angle(2), angle(90), angle(91))
    groups = near_duplicate_groups(vectors, threshold=0.99, neighbours=4)
    keep = representatives(groups, pixels=np.array([100, 400, 400, 50, 50]))
    assert keep.tolist() == [False, True, False, True, False]


def test_closest_reference_and_no_reference():
    similarity, index = closest_reference(unit(angle(0), angle(80)), unit(angle(5), angle(90)))
    assert index.tolist() == [0, 1]
    assert similarity == pytest.approx([np.cos(np.radians(5)), np.cos(np.radians(10))], abs=1e-5)
    similarity, index = closest_reference(unit(angle(0)), np.zeros((0, 1, 3), np.float32))
    assert similarity.tolist() == [-1.0] and index.tolist() == [-1]


def test_a_copy_matching_a_variant_of_its_original_joins_it():
    # image 1's plain view is far from image 0's (40°) but matches image 0's second variant (2°).
    vectors = np.stack([unit(angle(0), angle(38))[:, 0], unit(angle(40), angle(80))[:, 0]])  # (2, V=2, 3)
    groups = near_duplicate_groups(vectors, threshold=float(np.cos(np.radians(5))), neighbours=1)
    assert [g.tolist() for g in groups.members()] == [[0, 1]]
    assert groups.best_match[1] == pytest.approx(np.cos(np.radians(2)), abs=1e-5)
    similarity, index = closest_reference(vectors[1:], vectors[:1])
    assert index.tolist() == [0] and similarity[0] == pytest.approx(np.cos(np.radians(2)), abs=1e-5)


def test_a_single_image_has_no_group():
    groups = near_duplicate_groups(unit(angle(0)), threshold=0.5)
    assert groups.members() == [] and groups.best_match.tolist() == [-1.0]


def test_the_ivf_index_beyond_the_exact_limit_finds_the_same_groups():
    """With every list probed (few lists for few vectors) the IVF path must agree with exact search."""
    rng = np.random.default_rng(0)
    originals = rng.standard_normal((150, 16)).astype(np.float32)
    copies = originals[:30] + 0.05 * rng.standard_normal((30, 16)).astype(np.float32)
    vectors = np.concatenate([originals, copies])
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True))[:, None]
    exact = near_duplicate_groups(vectors, threshold=0.98)
    approximate = near_duplicate_groups(vectors, threshold=0.98, exact_pairs=0)
    assert [g.tolist() for g in approximate.members()] == [g.tolist() for g in exact.members()]
    assert len(exact.members()) == 30
