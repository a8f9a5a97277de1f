"""Evaluation inputs: the evaluation view of an image, and the raw-pixel baseline features."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dinoflow.data.multicrop import normalize


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
