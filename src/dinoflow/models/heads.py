"""DINO projection head.

- [0]: Caron et al., DINO, 2021, https://arxiv.org/abs/2104.14294 (§3.1, App. C)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrizations


class DINOHead(nn.Module):
    """MLP → L2-normalised bottleneck → weight-normalised prototype layer (no bias).

    With ``norm_last_layer`` the prototype norms are frozen at 1, so the last layer computes
    cosine similarities to K prototypes (DINO's default; the paper's README prefers False for
    ViT-S).

    Args:
        in_dim: backbone feature width D.
        out_dim: number of prototypes K.
        hidden_dim: MLP width.
        bottleneck_dim: width before L2 normalisation.
        nlayers: number of linear layers in the MLP (>= 1).
        norm_last_layer: freeze the weight-norm magnitude at 1.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        nlayers: int = 3,
        norm_last_layer: bool = True,
    ) -> None:
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (nlayers - 1) + [bottleneck_dim]
        layers: list[nn.Module] = []
        for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
            layers.append(nn.Linear(d_in, d_out))
            if i < nlayers - 1:
                layers.append(nn.GELU())
        self.mlp = nn.Sequential(*layers)
        self.apply(self._init_weights)
        self.last_layer = parametrizations.weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False))
        original = self.last_layer.parametrizations.weight.original0
        original.data.fill_(1.0)
        original.requires_grad = not norm_last_layer

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, in_dim) → (B, out_dim) prototype scores (logits before temperature)."""
        bottleneck = F.normalize(self.mlp(features), dim=-1, eps=1e-6)
        return self.last_layer(bottleneck)
