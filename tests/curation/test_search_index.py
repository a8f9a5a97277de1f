"""The catalogue index: exact up to a per-query cost, IVF beyond; cosine over any-norm vectors;
what is saved is what is searched."""

import json

import numpy as np
import pytest

from dinoflow.curation.search_index import (
    EXACT_MACS_PER_QUERY,
    build_search_index,
    index_kind,
    load_index,
    nearest,
    save_index,
)


def vectors(n: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    """(n, dim) float32 rows of random norms (the model's raw outputs are not unit vectors)."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, dim)) * rng.uniform(0.5, 3.0, (n, 1))).astype(np.float32)


def test_exact_while_a_query_stays_under_the_budget():
    at_limit = EXACT_MACS_PER_QUERY // 128
    assert index_kind(at_limit, 128) == "exact" and index_kind(at_limit + 1, 128) == "ivf"
    assert index_kind(1_000_000, 128) == "ivf" and index_kind(100_000, 128) == "exact"
    assert index_kind(100_000, 768) == "ivf"  # wider embeddings cost more per query
    assert index_kind(10, 128, "ivf") == "ivf" and index_kind(10**7, 128, "exact") == "exact"
    assert index_kind(0, 128, "ivf") == "exact"  # nothing to train an IVF index on


@pytest.mark.parametrize("kind", ["exact", "ivf"])
def test_each_stored_vector_finds_itself_first_with_cosine_one(kind):
    catalogue = vectors(5000)
    index, built = build_search_index(catalogue, kind)
    assert built == kind and index.ntotal == 5000
    similarity, rows = nearest(index, catalogue[:200] * 7.0, 5)  # scale does not matter: cosine
    assert (rows[:, 0] == np.arange(200)).all()
    np.testing.assert_allclose(similarity[:, 0], 1.0, atol=1e-5)
    assert (np.diff(similarity, axis=1) <= 1e-6).all()


def test_exact_similarities_are_cosines():
    catalogue, query = vectors(50), vectors(3, seed=1)
    similarity, rows = nearest(build_search_index(catalogue, "auto")[0], query, 4)
    unit = catalogue / np.linalg.norm(catalogue, axis=1, keepdims=True)
    cosine = (query / np.linalg.norm(query, axis=1, keepdims=True)) @ unit.T
    np.testing.assert_allclose(similarity, np.take_along_axis(cosine, rows, axis=1), atol=1e-5)
    assert (rows == np.argsort(-cosine, axis=1)[:, :4]).all()


def test_k_is_capped_by_the_catalogue_and_an_empty_one_finds_nothing():
    similarity, rows = nearest(build_search_index(vectors(3), "auto")[0], vectors(2, seed=1), 10)
    assert rows.shape == (2, 3) and sorted(rows[0]) == [0, 1, 2]
    empty, kind = build_search_index(np.zeros((0, 16), np.float32), "ivf")
    assert kind == "exact" and nearest(empty, vectors(2), 5)[1].shape == (2, 0)


def test_saved_and_loaded_indexes_answer_alike(tmp_path):
    catalogue = vectors(5000)
    index, kind = build_search_index(catalogue, "ivf")
    save_index(tmp_path, index, {"index": kind, "count": 5000})
    loaded, description = load_index(tmp_path)
    assert description == {"index": "ivf", "count": 5000} and loaded.nprobe == index.nprobe == 16
    queries = vectors(20, seed=2)
    for before, after in zip(nearest(index, queries, 5), nearest(loaded, queries, 5), strict=True):
        np.testing.assert_array_equal(before, after)
    assert json.loads((tmp_path / "index.json").read_text())["count"] == 5000
    assert not list(tmp_path.glob("*.tmp"))


def test_a_folder_without_an_index_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"holds no index.json: point --index at .*embed.output_dir"):
        load_index(tmp_path)
