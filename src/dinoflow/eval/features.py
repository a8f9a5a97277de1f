"""Evaluation inputs: the evaluation view of each stored image (and of any encoded image, for
serving), the frozen backbone's features (one pass serves k-NN, linear and segmentation probes),
and the raw-pixel baseline."""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from dinoflow.data.decode import WHITE
from dinoflow.data.multicrop import normalize
from dinoflow.data.shards import ShardReader, load_image


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


@dataclass(frozen=True)
class ImagePreprocessing:
    """How an image file becomes what evaluation feeds the backbone: the dataset node's storage
    step (``load_image``), then ``evaluation_view``.

    image_size: side S of the evaluation view (the training's global crop size).
    max_side, max_aspect, background: the dataset's storage settings (its ``index.json``).
    """

    image_size: int
    max_side: int
    max_aspect: float = 3.0
    background: tuple[int, int, int] = WHITE

    @classmethod
    def of_dataset(cls, settings: Mapping[str, Any], image_size: int) -> ImagePreprocessing:
        """From a dataset index's ``settings`` (as ``build_dataset`` records them)."""
        return cls(image_size, settings["max_side"], settings["max_aspect"], tuple(settings["background"]))


def image_view(source: Path | str | bytes, preprocessing: ImagePreprocessing) -> torch.Tensor:
    """An image file, or its encoded bytes (PNG, JPEG, ...) → (3, S, S) float in [0, 1]: exactly the
    view evaluation gets of that image once the dataset node has stored it.

    Raises:
        PIL.UnidentifiedImageError, OSError, ValueError: the source is not a decodable image.
    """
    p = preprocessing
    file = io.BytesIO(source) if isinstance(source, bytes) else Path(source)
    stored = load_image(file, max_side=p.max_side, max_aspect=p.max_aspect, background=p.background)
    return evaluation_view(torch.from_numpy(stored), p.image_size)


def evaluation_batches(reader: ShardReader, size: int, batch_size: int) -> Iterator[torch.Tensor]:
    """(B, 3, size, size) float batches in [0, 1] of every image of ``reader``, in order."""
    for start in range(0, len(reader), batch_size):
        stop = min(start + batch_size, len(reader))
        yield torch.stack([evaluation_view(reader.image(i), size) for i in range(start, stop)])


def evaluation_masks(reader: ShardReader, size: int) -> torch.Tensor:
    """(N, size, size) int64 class ids: each mask's centred square, resized (nearest), aligned
    with ``evaluation_view`` of its image."""
    masks = []
    for i in range(len(reader)):
        mask = reader.mask(i)
        rows, cols = centre_square(mask)
        masks.append(F.interpolate(mask[rows, cols][None, None].float(), size=(size, size), mode="nearest-exact")[0, 0])
    return torch.stack(masks).long() if masks else torch.zeros(0, size, size, dtype=torch.int64)


@dataclass
class Features:
    """Frozen features of a split.

    variants: the linear-probe inputs {"cls1": (N, D), "cls1+avgpool": (N, 2D), "cls4": (N, 4D),
        "cls4+avgpool": (N, 5D)}; "cls1" is the backbone's output (k-NN uses it, L2-normalised).
    patch_tokens: (N, D, h, w) last-block patch tokens after the final norm (bf16, to halve memory).
    """

    variants: dict[str, torch.Tensor]
    patch_tokens: torch.Tensor


@torch.no_grad()
def extract_features(
    backbone: nn.Module, batches: Iterable[torch.Tensor], num_batches: int | None = None, desc: str = "features"
) -> Features:
    """One pass of the frozen backbone (bf16 autocast) over evaluation views.

    Args:
        batches: (B, 3, S, S) evaluation views in [0, 1] (``evaluation_batches``).
    """
    backbone.eval()
    parts: dict[str, list[torch.Tensor]] = {"cls1": [], "cls4": [], "avgpool": [], "patch": []}
    for batch in tqdm(batches, total=num_batches, desc=desc, unit="batch", disable=None, leave=False):
        with torch.autocast(batch.device.type, dtype=torch.bfloat16):
            blocks = backbone.forward_intermediates(
                normalize(batch),
                indices=min(4, len(backbone.blocks)),
                norm=True,
                output_fmt="NLC",
                intermediates_only=True,
                return_prefix_tokens=True,
            )  # last 4 blocks: (patch tokens (B, N, D), prefix tokens (B, P, D)), final norm applied
        cls = [prefix[:, 0].float() for _, prefix in blocks]
        patches = blocks[-1][0]
        side = math.isqrt(patches.shape[1])
        parts["cls1"].append(cls[-1])
        parts["cls4"].append(torch.cat(cls, dim=1))
        parts["avgpool"].append(patches.float().mean(dim=1))
        parts["patch"].append(patches.to(torch.bfloat16).transpose(1, 2).reshape(len(batch), -1, side, side))
    cls1, cls4, avg, patch = (torch.cat(parts[k]) for k in ("cls1", "cls4", "avgpool", "patch"))
    variants = {
        "cls1": cls1,
        "cls1+avgpool": torch.cat([cls1, avg], dim=1),
        "cls4": cls4,
        "cls4+avgpool": torch.cat([cls4, avg], dim=1),
    }
    return Features(variants, patch)


def raw_pixel_features(batches: Iterable[torch.Tensor]) -> torch.Tensor:
    """Baseline: each image's pixels, standardised per image (a fairer pixel baseline than raw).

    Args:
        batches: (B, 3, S, S) in [0, 1].

    Returns:
        (N, 3*S*S).
    """
    flat = torch.cat([b.flatten(1) for b in batches])
    return (flat - flat.mean(1, keepdim=True)) / (flat.std(1, keepdim=True) + 1e-6)
