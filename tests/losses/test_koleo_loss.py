import math

import pytest
import torch

from dinoflow.losses.koleo_loss import koleo_loss


def test_two_opposite_unit_vectors():
    # Nearest neighbour of each is the other, at distance 2 → loss = -log 2.
    x = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    assert koleo_loss(x).item() == pytest.approx(-math.log(2), abs=1e-6)


def test_scale_invariant_and_hand_computed_triangle():
    # Three unit vectors at 0°, 90°, 180°: nn distances sqrt(2), sqrt(2), sqrt(2).
    x = torch.tensor([[2.0, 0.0], [0.0, 5.0], [-1.0, 0.0]])
    assert koleo_loss(x).item() == pytest.approx(-math.log(math.sqrt(2)), abs=1e-6)


def test_spread_points_score_lower_than_clustered():
    torch.manual_seed(0)
    spread = torch.randn(64, 8)
    clustered = torch.ones(64, 8) + 0.01 * torch.randn(64, 8)
    assert koleo_loss(spread) < koleo_loss(clustered)
