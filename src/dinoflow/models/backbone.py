"""ViT backbones from timm, sized by config.

- [0]: Dosovitskiy et al., An Image is Worth 16x16 Words, 2020, https://arxiv.org/abs/2010.11929
- [1]: Caron et al., DINO, 2021, https://arxiv.org/abs/2104.14294 (ViT-S/B as timm's)
- [2]: Xiao et al., Early Convolutions Help Transformers See Better, 2021, https://arxiv.org/abs/2106.14881
"""

from __future__ import annotations

import math

import timm
import torch
from timm.layers import PatchEmbed, SwiGLUPacked
from torch import nn


class ConvStemPatchEmbed(PatchEmbed):
    """timm's patch embedding with the single p x p stride-p projection replaced by a convolutional
    stem (Xiao et al. 2021, [2]): log2(p) 3x3 stride-2 convolutions, each followed by a per-sample
    GroupNorm and GELU, then a 1x1 convolution to the embedding width. Same token grid, same
    interface (so position embeddings, masking and export are unchanged); the early convolutions
    make small ViTs train faster and more stably.

    Per-sample normalisation (not the paper's BatchNorm) because the DINO teacher is an EMA of the
    student's parameters and would never see updated BatchNorm statistics.

    Maps (B, 3, H, W) to (B, H/p, W/p, D) (NHWC, as timm's dynamic-size ViTs expect).
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        patch = self.patch_size[0]
        if patch != self.patch_size[1] or patch < 2 or patch & (patch - 1):
            raise ValueError(f"model.stem=conv needs a square power-of-two patch_size >= 2, got {self.patch_size}")
        embed_dim, in_chans = self.proj.out_channels, self.proj.in_channels
        layers, channels = [], in_chans
        for i in range(int(math.log2(patch))):
            width = max(embed_dim // 2 ** (int(math.log2(patch)) - 1 - i) // 2, 16)  # doubles per stage
            layers += [
                nn.Conv2d(channels, width, 3, stride=2, padding=1, bias=False),
                nn.GroupNorm(1, width),
                nn.GELU(),
            ]
            channels = width
        layers.append(nn.Conv2d(channels, embed_dim, 1))
        self.proj = nn.Sequential(*layers)


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
    stem: str = "patch",
) -> tuple[nn.Module, int]:
    """Create a timm ViT without classifier that accepts any input size.

    ``dynamic_img_size`` interpolates the position embeddings (bicubic) for every input size, so
    global and local crops go through one module. ``None`` overrides keep the arch's own value.
    ``reg_tokens`` adds register tokens without position embedding (Darcet et al. 2023, as timm's
    ``*_reg4_dinov2``); ``layer_scale_init`` enables LayerScale; ``mlp="swiglu"`` uses a SwiGLU FFN
    with hidden width 2/3 of 2x the MLP's, so the parameter count stays that of the MLP (DINOv2).
    ``stem="conv"`` replaces the patchify layer by a convolutional stem (``ConvStemPatchEmbed``).

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
    if stem == "conv":
        overrides["embed_layer"] = ConvStemPatchEmbed
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
