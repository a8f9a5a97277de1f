"""Evaluation inputs: the evaluation view of each stored image, and the raw-pixel baseline features."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
import torch.nn.functional as F

from dinoflow.data.shards import ShardReader


def centre_square(image: torch.Tensor) -> tuple[slice, slice]:
    """Row and column slices of the centred square of a (..., h, w) tensor."""
    h, w = image.shape[-2:]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return slice(top, top + side), slice(left, left + side)


def evaluation_view(image: torch.Tensor, size: int) -> torch.Tensor:
    """(3, h, w) uint8 → (3, size, size) float in [0, 1]: the centred square, resized (bicubic,
    antialiased). No augmentation, as in DINO's k-NN / linear evaluation."""
    rows, cols = centre_square(image)
    x = image[:, rows, cols].float()[None] / 255
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bicubic", antialias=True, align_corners=False)
    return x[0].clamp(0, 1)


def evaluation_batches(reader: ShardReader, size: int, batch_size: int) -> Iterator[torch.Tensor]:
    """(B, 3, size, size) float batches in [0, 1] of every image of ``reader``, in order."""
    for start in range(0, len(reader), batch_size):
        stop = min(start + batch_size, len(reader))
        yield torch.stack([evaluation_view(reader.image(i), size) for i in range(start, stop)])


def raw_pixel_features(batches: Iterable[torch.Tensor]) -> torch.Tensor:
    """Baseline: each image's pixels, standardised per image (a fairer pixel baseline than raw).

    Args:
        batches: (B, 3, S, S) in [0, 1].

    Returns:
        (N, 3*S*S).
    """
    flat = torch.cat([b.flatten(1) for b in batches])
    return (flat - flat.mean(1, keepdim=True)) / (flat.std(1, keepdim=True) + 1e-6)
