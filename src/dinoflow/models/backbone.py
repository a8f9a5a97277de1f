"""ViT backbones from timm, sized by config.

- [0]: Dosovitskiy et al., An Image is Worth 16x16 Words, 2020, https://arxiv.org/abs/2010.11929
- [1]: Caron et al., DINO, 2021, https://arxiv.org/abs/2104.14294 (ViT-S/B as timm's)
"""

from __future__ import annotations

import timm
import torch
from timm.layers import SwiGLUPacked
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
    reg_tokens: int = 0,
    layer_scale_init: float | None = None,
    mlp: str = "mlp",
) -> tuple[nn.Module, int]:
    """Create a timm ViT without classifier that accepts any input size.

    ``dynamic_img_size`` interpolates the position embeddings (bicubic) for every input size, so
    global and local crops go through one module. ``None`` overrides keep the arch's own value.
    ``reg_tokens`` adds register tokens without position embedding (Darcet et al. 2023, as timm's
    ``*_reg4_dinov2``); ``layer_scale_init`` enables LayerScale; ``mlp="swiglu"`` uses a SwiGLU FFN
    with hidden width 2/3 of 2x the MLP's, so the parameter count stays that of the MLP (DINOv2).

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
    if reg_tokens:
        overrides.update(reg_tokens=reg_tokens, no_embed_class=True)
    if layer_scale_init is not None:
        overrides["init_values"] = layer_scale_init
    if mlp == "swiglu":
        overrides.update(mlp_layer=SwiGLUPacked, act_layer=nn.SiLU, mlp_ratio=4 * 2 / 3 * 2)
    model = timm.create_model(
        arch,
        pretrained=False,
        num_classes=0,
        img_size=img_size,
        dynamic_img_size=True,
        drop_path_rate=drop_path_rate,
        **{k: v for k, v in overrides.items() if v is not None},
    )
    use_fused_attention(model, fused_attn)
    return model, model.num_features


def use_fused_attention(model: nn.Module, enabled: bool) -> None:
    """Switch every timm attention layer of ``model`` between SDPA and plain matmul + softmax
    (same function, different kernels)."""
    for module in model.modules():
        if hasattr(module, "fused_attn"):
            module.fused_attn = enabled


def backbone_tokens(
    backbone: nn.Module,
    images: torch.Tensor,
    masks: torch.Tensor | None = None,
    mask_token: torch.Tensor | None = None,
) -> torch.Tensor:
    """Final-norm tokens of a timm ViT, optionally with masked patches (iBOT / DINOv2).

    Masked patch embeddings are replaced by ``mask_token`` *before* the position embedding is
    added (``prepare_tokens_with_masks`` in DINOv2), so the network knows where they were.

    Args:
        images: (B, 3, H, W).
        masks: (B, H/p * W/p) bool, True = masked; None for no masking.
        mask_token: (1, D) learned embedding, required with ``masks``.

    Returns:
        (B, P + H/p * W/p, D): P prefix tokens (CLS, registers) then the patch tokens.
    """
    x = backbone.patch_embed(images)  # (B, h, w, D) with dynamic_img_size
    if masks is not None:
        x = torch.where(masks.view(*x.shape[:-1], 1), mask_token.to(x.dtype), x)
    x = backbone._pos_embed(x)
    x = backbone.patch_drop(x)
    x = backbone.norm_pre(x)
    x = backbone.blocks(x)
    return backbone.norm(x)


def patch_tokens(backbone: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Final-norm CLS and patch tokens.

    Args:
        images: (B, 3, H, W).

    Returns:
        cls: (B, D); patches: (B, H/p * W/p, D).
    """
    tokens = backbone_tokens(backbone, images)
    return tokens[:, 0], tokens[:, backbone.num_prefix_tokens :]
