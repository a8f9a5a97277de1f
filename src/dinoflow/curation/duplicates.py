"""Near-duplicate groups and evaluation decontamination on unit embeddings (DINOv2 §3: a k-NN
graph, edges above a cosine similarity, connected components, one image kept per component;
training images too close to an evaluation image removed).

The k-NN search is exact (``faiss.IndexFlatIP``) up to ``EXACT_PAIRS`` (query, reference vector)
pairs: a brute-force pass costs N · N·V · D multiply-adds (V crop variants per image). Beyond, an
IVF index keeps it near N^1.5 (``benchmarks/curation.py --scale`` gives the times and memory).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import faiss
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

EXACT_PAIRS = 10**11  # queries x reference vectors searched exactly (about a minute); beyond, an IVF index
QUERY_CHUNK = 8192  # queries per search call: bounds the (chunk, k x V) hit arrays


def build_index(vectors: np.ndarray, exact: bool) -> faiss.Index:
    """(N, D) float32 unit rows → an exact inner-product index, or an IVF index of sqrt(N) lists,
    16 of them probed per query (approximate: a rare true neighbour in an unprobed list is missed),
    trained on a fixed sample so the same vectors give the same index. Row i is id i."""
    n, d = vectors.shape
    if exact:
        index = faiss.IndexFlatIP(d)
    else:
        lists = int(math.sqrt(n))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, lists, faiss.METRIC_INNER_PRODUCT)
        sample = np.random.default_rng(0).choice(n, size=min(n, 64 * lists), replace=False)
        index.train(vectors[np.sort(sample)])
        index.nprobe = 16
    index.add(vectors)
    return index


def _search(
    queries: np.ndarray, references: np.ndarray, k: int, exact_pairs: int = EXACT_PAIRS
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest references of each query, one hit per reference image.

    Args:
        queries: (Q, D) unit rows; references: (R, V, D), V variants of each reference image.
        k: reference images wanted per query.
        exact_pairs: exact search up to this many (query, reference vector) pairs; beyond, IVF.

    Returns:
        ((Q, k') cosine similarities, best variant per image, decreasing; (Q, k') image indices,
        -1 where fewer were found), k' = min(k, R).
    """
    r, v, d = references.shape
    vectors = np.ascontiguousarray(references.reshape(r * v, d), dtype=np.float32)
    index = build_index(vectors, exact=len(queries) * len(vectors) <= exact_pairs)
    k = min(k, r)
    best_sim, best_owner = np.full((len(queries), k), -np.inf, np.float32), np.full((len(queries), k), -1, np.int64)
    for start in range(0, len(queries), QUERY_CHUNK):
        chunk = np.ascontiguousarray(queries[start : start + QUERY_CHUNK], dtype=np.float32)
        similarity, hit = index.search(chunk, min(k * v, r * v))
        owner = np.where(hit >= 0, hit // v, -1)
        for q in range(len(chunk)):  # hits are sorted: the first hit of each image is its best variant
            _, first = np.unique(owner[q], return_index=True)
            first = np.sort(first[owner[q][first] >= 0])[:k]
            best_sim[start + q, : len(first)] = similarity[q, first]
            best_owner[start + q, : len(first)] = owner[q, first]
    return best_sim, best_owner


@dataclass(frozen=True)
class DuplicateGroups:
    """Connected components of the similarity graph.

    component: (N,) int component id per image (singletons have their own).
    best_match: (N,) float32 highest cosine similarity to another image (-1 when N = 1).
    """

    component: np.ndarray
    best_match: np.ndarray

    def members(self) -> list[np.ndarray]:
        """Index arrays of the components with more than one image, largest first."""
        order = np.argsort(self.component, kind="stable")
        ids, starts, counts = np.unique(self.component[order], return_index=True, return_counts=True)
        groups = [order[s : s + c] for s, c in zip(starts, counts, strict=True) if c > 1]
        return sorted(groups, key=lambda g: (-len(g), int(g[0])))


def near_duplicate_groups(
    vectors: np.ndarray, threshold: float, neighbours: int = 16, exact_pairs: int = EXACT_PAIRS
) -> DuplicateGroups:
    """Group images whose embeddings are within ``threshold`` cosine similarity.

    Args:
        vectors: (N, V, D) unit rows, V variants per image, the plain view first (``embeddings``).
            Image i's plain view is compared with every variant of image j, so a copy cropped
            from j matches the variant of j cropped alike.
        threshold: an edge joins i and j when their best similarity is >= threshold.
        neighbours: k of the k-NN graph; a group larger than k is still found through its chains.
        exact_pairs: exact search up to N x N·V pairs; beyond, an approximate IVF index.
    """
    n = len(vectors)
    if n < 2:
        return DuplicateGroups(np.arange(n), np.full(n, -1.0, np.float32))
    similarity, neighbour = _search(vectors[:, 0], vectors, neighbours + 1, exact_pairs)  # +1: it finds itself
    rows = np.repeat(np.arange(n), similarity.shape[1])
    others = (neighbour.ravel() != rows) & (neighbour.ravel() >= 0)
    edge = others & (similarity.ravel() >= threshold)
    graph = coo_matrix((np.ones(edge.sum()), (rows[edge], neighbour.ravel()[edge])), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    best = np.where(others.reshape(similarity.shape), similarity, -np.inf).max(axis=1)
    return DuplicateGroups(component.astype(np.int64), np.where(np.isfinite(best), best, -1.0).astype(np.float32))


def representatives(groups: DuplicateGroups, pixels: np.ndarray) -> np.ndarray:
    """(N,) bool: the image kept in each component — the one with the most pixels (the least
    degraded copy: re-encodes and crops lose pixels), ties to the lowest index (manifest order)."""
    keep = np.ones(len(groups.component), dtype=bool)
    for members in groups.members():
        best = members[np.lexsort((members, -pixels[members]))[0]]
        keep[members] = False
        keep[best] = True
    return keep


def closest_reference(queries: np.ndarray, references: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each query image (its plain view), the most similar reference image over the
    reference's variants: ((Q,) cosine, (Q,) reference index). With no reference: -1 and -1.

    Args:
        queries: (Q, V, D); references: (R, V, D) unit rows (``embeddings``).
    """
    if len(references) == 0 or len(queries) == 0:
        return np.full(len(queries), -1.0, np.float32), np.full(len(queries), -1, np.int64)
    similarity, index = _search(queries[:, 0], references, 1)
    return similarity[:, 0], index[:, 0]
