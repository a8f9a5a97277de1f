"""Weighted k-NN classification on frozen features, as in DINO's ``eval_knn.py``.

- [0]: Wu et al., Unsupervised Feature Learning via Non-Parametric Instance Discrimination, 2018
- [1]: Caron et al., DINO, 2021, https://arxiv.org/abs/2104.14294 (App. F.1: k=20, T=0.07)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_SIMILARITY_BLOCK = 64 * 2**20  # float32 entries of one (chunk, N_train) similarity block


@torch.no_grad()
def knn_classify_multi_k(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    num_classes: int,
    ks: tuple[int, ...] = (20,),
    temperature: float = 0.07,
    chunk_size: int | None = None,
) -> dict[int, torch.Tensor]:
    """Class scores of each test sample from its k most cosine-similar training samples, for
    every k in ``ks`` from one nearest-neighbour search.

    Each neighbour votes for its class with weight ``exp(sim / T)``. Test samples are processed
    in chunks, so memory is O(chunk_size x N_train); by default a chunk's similarity block stays
    under 256 MB (1M train x 100k test features fit a 24 GB machine).

    Args:
        train_features: (N, D); train_labels: (N,) int64 in [0, C).
        test_features: (M, D).

    Returns:
        {k: (M, C) vote totals}.
    """
    train = F.normalize(train_features.float(), dim=1)
    test = F.normalize(test_features.float(), dim=1)
    k_max = min(max(ks), train.shape[0])
    chunk_size = chunk_size or max(1, _SIMILARITY_BLOCK // max(1, train.shape[0]))
    scores: dict[int, list[torch.Tensor]] = {k: [] for k in ks}
    for start in range(0, test.shape[0], chunk_size):
        similarity = test[start : start + chunk_size] @ train.T  # (m, N)
        top_sim, top_idx = similarity.topk(k_max, dim=1)  # sorted, most similar first
        weights, labels = (top_sim / temperature).exp(), train_labels[top_idx]
        for k in ks:
            votes = torch.zeros(top_sim.shape[0], num_classes, device=train.device)
            votes.scatter_add_(1, labels[:, :k], weights[:, :k])
            scores[k].append(votes)
    return {k: torch.cat(v) for k, v in scores.items()}


def knn_classify(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """(M, C) weighted k-NN votes for one k (see ``knn_classify_multi_k``)."""
    return knn_classify_multi_k(
        train_features, train_labels, test_features, num_classes, (k,), temperature, chunk_size
    )[k]


def top_k_accuracy(scores: torch.Tensor, labels: torch.Tensor, k: int = 1) -> float:
    """Share of rows whose true label is among the k highest scores."""
    top = scores.topk(min(k, scores.shape[1]), dim=1).indices
    return float((top == labels[:, None]).any(dim=1).float().mean())
