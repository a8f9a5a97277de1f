import math

import pytest
import torch
import torch.nn.functional as F

from dinoflow.eval import knn
from dinoflow.eval.knn import centred_byte_cosine_blocks, cosine_blocks, knn_classify, top_k_accuracy


def test_weighted_votes_hand_computed():
    train = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    labels = torch.tensor([0, 1, 1])
    query = torch.tensor([[1.0, 0.0]])
    scores = knn_classify(train, labels, query, num_classes=2, k=2, temperature=0.5)
    # cosines to the query: 1, 0, 1/sqrt(2); top-2 = samples 0 (class 0) and 2 (class 1).
    expected = torch.tensor([[math.exp(1 / 0.5), math.exp((1 / math.sqrt(2)) / 0.5)]])
    torch.testing.assert_close(scores, expected)


def test_chunking_does_not_change_scores():
    torch.manual_seed(0)
    train, test = torch.randn(50, 8), torch.randn(23, 8)
    labels = torch.randint(0, 5, (50,))
    whole = knn_classify(train, labels, test, 5, k=7, chunk_size=1000)
    chunked = knn_classify(train, labels, test, 5, k=7, chunk_size=4)
    torch.testing.assert_close(whole, chunked)


def test_top_k_accuracy():
    scores = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.05, 0.15], [0.2, 0.3, 0.5]])
    labels = torch.tensor([1, 2, 1])
    assert top_k_accuracy(scores, labels, 1) == pytest.approx(1 / 3)
    assert top_k_accuracy(scores, labels, 2) == pytest.approx(1.0)


def test_multi_k_matches_single_k_and_handles_k_beyond_the_data():
    from dinoflow.eval.knn import knn_classify_multi_k

    torch.manual_seed(1)
    train, test = torch.randn(30, 4), torch.randn(7, 4)
    labels = torch.randint(0, 3, (30,))
    multi = knn_classify_multi_k(train, labels, test, 3, ks=(1, 5, 200))
    for k in (1, 5):
        torch.testing.assert_close(multi[k], knn_classify(train, labels, test, 3, k=k))
    torch.testing.assert_close(multi[200], knn_classify(train, labels, test, 3, k=30))  # all 30 neighbours


def test_tied_neighbours_vote_with_equal_weight():
    train = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 1, 1])
    scores = knn_classify(train, labels, torch.tensor([[1.0, 0.0]]), 2, k=2, temperature=1.0)
    torch.testing.assert_close(scores, torch.tensor([[math.e, math.e]]))


def centred_cosines(train: torch.Tensor, test: torch.Tensor) -> torch.Tensor:
    """Reference: float64 cosine of the mean-centred vectors."""
    train, test = (x.double() - x.double().mean(1, keepdim=True) for x in (train, test))
    return F.normalize(test, dim=1) @ F.normalize(train, dim=1).T


def test_byte_cosines_hand_computed():
    train = torch.tensor([[0, 0, 255, 255], [255, 255, 0, 0], [0, 255, 0, 255]], dtype=torch.uint8)
    query = torch.tensor([[10, 10, 200, 200]], dtype=torch.uint8)
    # centred: query (-95, -95, 95, 95) ∝ (-1, -1, 1, 1): +1 to row 0, -1 to row 1, 0 to row 2
    (block,) = centred_byte_cosine_blocks(train, query)
    torch.testing.assert_close(block, torch.tensor([[1.0, -1.0, 0.0]]))


@pytest.mark.parametrize("column_block", [None, 7])  # 7: the int32-safe column split, exercised
def test_byte_cosines_are_exact(monkeypatch, column_block):
    if column_block:
        monkeypatch.setattr(knn, "_INT32_SAFE_PIXELS", column_block)
    generator = torch.Generator().manual_seed(3)
    train = torch.randint(0, 256, (300, 48), dtype=torch.uint8, generator=generator)
    test = torch.randint(0, 256, (40, 48), dtype=torch.uint8, generator=generator)
    train[:, :30], test[:, :30] = 0, 0  # black backgrounds: Σs·t and Σs·Σt / P nearly cancel
    reference = centred_cosines(train, test)
    ours = torch.cat(list(centred_byte_cosine_blocks(train, test, chunk_size=16)))
    assert (ours.double() - reference).abs().max() < 1e-6
    floats = torch.cat(list(cosine_blocks(*(x.float() - x.float().mean(1, keepdim=True) for x in (train, test)))))
    assert (floats.double() - reference).abs().max() < 1e-5  # the fp32 path, for scale
