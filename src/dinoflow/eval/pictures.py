"""What the backbone looks at: last-layer CLS self-attention per head (DINO Fig. 1 / 3) and a
3-component PCA of the patch features shown as RGB (DINOv2 Fig. 1); and how training went, as one
picture of the training curves (loss terms, teacher health, learning rate).

- [0]: Caron et al., DINO, 2021, https://arxiv.org/abs/2104.14294 (§4.2.1, ``visualize_attention.py``)
- [1]: Oquab et al., DINOv2, 2023, https://arxiv.org/abs/2304.07193 (§7.5)
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.figure import Figure  # not pyplot: no GUI backend or global figure state on servers
from PIL import Image
from torch import nn

from dinoflow.data.multicrop import normalize


@torch.no_grad()
def cls_attention_maps(backbone: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Attention of the CLS query over the patches in the last block, per head.

    Args:
        images: (B, 3, S, S) evaluation views in [0, 1].

    Returns:
        (B, heads, h, w), each map summing to at most 1 (prefix tokens take the rest).
    """
    backbone.eval()
    attention = backbone.blocks[-1].attn
    captured: dict[str, torch.Tensor] = {}
    handle = attention.register_forward_pre_hook(lambda _, args: captured.setdefault("x", args[0]))
    try:
        backbone(normalize(images))
    finally:
        handle.remove()
    x = captured["x"]  # (B, N, D): the last block's normalised input tokens
    b, n, _ = x.shape
    q, k, _ = attention.qkv(x).reshape(b, n, 3, attention.num_heads, attention.head_dim).permute(2, 0, 3, 1, 4)
    q, k = attention.q_norm(q), attention.k_norm(k)
    weights = ((q[:, :, :1] * attention.scale) @ k.transpose(-2, -1)).softmax(-1)[:, :, 0]  # (B, H, N)
    patches = weights[:, :, backbone.num_prefix_tokens :]
    side = math.isqrt(patches.shape[-1])
    return patches.reshape(b, attention.num_heads, side, side).float()


def pca_rgb(patch_tokens: torch.Tensor) -> torch.Tensor:
    """First 3 principal components of all patch tokens of the batch, each min-max scaled to [0, 1].

    Args:
        patch_tokens: (B, D, h, w).

    Returns:
        (B, 3, h, w).
    """
    b, d, h, w = patch_tokens.shape
    flat = patch_tokens.float().permute(0, 2, 3, 1).reshape(-1, d)
    flat = flat - flat.mean(0)
    _, _, v = torch.linalg.svd(flat, full_matrices=False)
    projected = flat @ v[:3].T  # (B*h*w, 3)
    low, high = projected.min(0).values, projected.max(0).values
    projected = (projected - low) / (high - low).clamp_min(1e-8)
    return projected.reshape(b, h, w, 3).permute(0, 3, 1, 2)


def _tile(array: np.ndarray, size: int) -> Image.Image:
    """(H, W, 3) in [0, 1] → a size x size RGB tile (nearest, so patches stay visible)."""
    return Image.fromarray((array.clip(0, 1) * 255).astype(np.uint8)).resize((size, size), Image.Resampling.NEAREST)


def _heat(map_: torch.Tensor) -> np.ndarray:
    scaled = (map_ - map_.min()) / (map_.max() - map_.min()).clamp_min(1e-8)
    return colormaps["inferno"](scaled.numpy())[..., :3]


def grid_image(rows: list[list[np.ndarray]], tile: int = 96) -> Image.Image:
    """Rows of (H, W, 3) arrays in [0, 1] → one RGB image of tiles separated by 2 px gaps."""
    columns = max(len(r) for r in rows)
    canvas = Image.new("RGB", (columns * (tile + 2), len(rows) * (tile + 2)), "white")
    for i, row in enumerate(rows):
        for j, array in enumerate(row):
            canvas.paste(_tile(array, tile), (j * (tile + 2), i * (tile + 2)))
    return canvas


def figure_image(figure: Figure, dpi: int = 110, **savefig_args) -> Image.Image:
    """A matplotlib figure rendered as a PNG would be, as an RGB image (the catalog writes it,
    the run page shows it)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, dpi=dpi, format="png", **savefig_args)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def render_pictures(backbone: nn.Module, images: torch.Tensor, patch_tokens: torch.Tensor) -> dict[str, Image.Image]:
    """``attention_maps`` (per row: image, then each head's CLS attention) and ``patch_pca``
    (per row: image, PCA of its patch features).

    Args:
        images: (B, 3, S, S) evaluation views in [0, 1]; patch_tokens: (B, D, h, w) of the same images.
    """
    pictures = [image.permute(1, 2, 0).numpy() for image in images]
    attention = cls_attention_maps(backbone, images)
    pca = pca_rgb(patch_tokens)
    attention_rows = [
        [picture, *(_heat(head) for head in maps)] for picture, maps in zip(pictures, attention, strict=True)
    ]
    pca_rows = [[picture, colours.permute(1, 2, 0).numpy()] for picture, colours in zip(pictures, pca, strict=True)]
    return {"attention_maps": grid_image(attention_rows), "patch_pca": grid_image(pca_rows)}


# (panel title, metrics.jsonl keys): a panel is drawn when the run logged any of its keys.
CURVE_PANELS = (
    ("loss", ("loss", "loss_dino", "loss_ibot", "loss_koleo")),
    ("teacher health (entropy / ln K)", ("teacher_entropy", "teacher_batch_entropy")),
    ("learning rate", ("lr",)),
    ("online k-NN top-1", ("online_knn_top1",)),
)


def plot_training_curve(records: Sequence[Mapping[str, float]]) -> Image.Image:
    """``records`` (one per logging step, with ``step``; the rows of ``metrics.jsonl``) as one picture:
    a panel per group of ``CURVE_PANELS`` the run logged, steps on the x axis."""
    panels = [(title, [k for k in keys if any(k in r for r in records)]) for title, keys in CURVE_PANELS]
    panels = [(title, keys) for title, keys in panels if keys]
    if not records or not panels:
        raise ValueError("no training metrics to plot (metrics.jsonl is empty)")
    figure = Figure(figsize=(3.6 * len(panels), 3.0), layout="tight")
    axes = figure.subplots(1, len(panels), squeeze=False)
    for axis, (title, keys) in zip(axes[0], panels, strict=True):
        for key in keys:
            points = [(r["step"], r[key]) for r in records if key in r]
            axis.plot(*zip(*points, strict=True), label=key, linewidth=1.2)
        axis.set_title(title, fontsize=9)
        axis.set_xlabel("step", fontsize=8)
        axis.tick_params(labelsize=7)
        if len(keys) > 1:
            axis.legend(fontsize=7)
    return figure_image(figure)
