"""KoLeo regulariser: spreads features by penalising small nearest-neighbour distances.

- [0]: Sablayrolles et al., Spreading vectors for similarity search, 2019, https://arxiv.org/abs/1806.03198
- [1]: Oquab et al., DINOv2, 2023, https://arxiv.org/abs/2304.07193 (§4, weight 0.1)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def koleo_loss(features: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Kozachenko–Leonenko entropy estimate on L2-normalised features, as in DINOv2.

    Args:
        features: (B, D), B >= 2; computed in fp32 whatever the autocast dtype.

    Returns:
        Scalar ``-mean_i log(||x_i - x_nn(i)|| + eps)``.
    """
    with torch.autocast(device_type=features.device.type, enabled=False):
        x = F.normalize(features.float(), dim=-1, eps=1e-8)
        similarity = x @ x.T
        similarity.fill_diagonal_(-2.0)  # never pick yourself as the nearest neighbour
        nearest = similarity.argmax(dim=1)
        distances = (x - x[nearest]).norm(dim=-1)
        return -torch.log(distances + eps).mean()
