"""Frozen-backbone feature extraction (teacher CLS tokens, L2-normalised)."""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from dinoflow.data.multicrop import normalize


@torch.no_grad()
def extract_features(
    backbone: nn.Module,
    images: torch.Tensor,
    image_size: int,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    precision: str = "fp32",
) -> torch.Tensor:
    """Args:
        images: (N, 3, H, W) uint8, resized to ``image_size`` (bicubic, antialiased).

    Returns:
        (N, D) float32 L2-normalised CLS features.
    """
    backbone = backbone.to(device).eval()
    autocast = (
        torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
        if precision == "bf16"
        else contextlib.nullcontext()
    )
    out = []
    for start in range(0, len(images), batch_size):
        x = prepare_images(images[start : start + batch_size].to(device), image_size)
        with autocast:
            out.append(F.normalize(backbone(x).float(), dim=-1).cpu())
    return torch.cat(out) if out else torch.zeros(0)


def prepare_images(images: torch.Tensor, image_size: int) -> torch.Tensor:
    """(B, 3, H, W) uint8 → (B, 3, S, S) normalised float, the evaluation view of an image."""
    x = images.float() / 255
    if x.shape[-1] != image_size:
        x = F.interpolate(x, size=(image_size, image_size), mode="bicubic", antialias=True, align_corners=False)
    return normalize(x.clamp(0, 1))


def raw_pixel_features(images: torch.Tensor, image_size: int) -> torch.Tensor:
    """Baseline: each image's pixels, standardised per image (a fairer pixel baseline than raw)."""
    x = F.interpolate(images.float(), size=(image_size, image_size), mode="bilinear", antialias=True)
    flat = x.flatten(1)
    return (flat - flat.mean(1, keepdim=True)) / (flat.std(1, keepdim=True) + 1e-6)
