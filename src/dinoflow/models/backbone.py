"""ViT backbones from timm, sized by config.

- [0]: Dosovitskiy et al., An Image is Worth 16x16 Words, 2020, https://arxiv.org/abs/2010.11929
- [1]: Caron et al., DINO, 2021, https://arxiv.org/abs/2104.14294 (ViT-S/B as timm's)
"""

from __future__ import annotations

import timm
import torch
from torch import nn


def build_backbone(
    arch: str,
    img_size: int,
    patch_size: int | None = None,
    embed_dim: int | None = None,
    depth: int | None = None,
    num_heads: int | None = None,
    drop_path_rate: float = 0.0,
    fused_attn: bool = True,
) -> tuple[nn.Module, int]:
    """Create a timm ViT without classifier that accepts any input size.

    ``dynamic_img_size`` interpolates the position embeddings (bicubic) for every input size, so
    global and local crops go through one module. ``None`` overrides keep the arch's own value.

    Returns:
        backbone: maps (B, 3, H, W) float images to (B, embed_dim) final-norm CLS features.
        embed_dim: feature width.
    """
    overrides = {
        "patch_size": patch_size,
        "embed_dim": embed_dim,
        "depth": depth,
        "num_heads": num_heads,
    }
    model = timm.create_model(
        arch,
        pretrained=False,
        num_classes=0,
        img_size=img_size,
        dynamic_img_size=True,
        drop_path_rate=drop_path_rate,
        **{k: v for k, v in overrides.items() if v is not None},
    )
    for module in model.modules():
        if hasattr(module, "fused_attn"):
            module.fused_attn = fused_attn
    return model, model.num_features


def patch_tokens(backbone: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Final-norm CLS and patch tokens.

    Args:
        images: (B, 3, H, W).

    Returns:
        cls: (B, D); patches: (B, H/p * W/p, D).
    """
    tokens = backbone.forward_features(images)
    prefix = getattr(backbone, "num_prefix_tokens", 1)
    return tokens[:, 0], tokens[:, prefix:]
