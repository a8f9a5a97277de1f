"""Evaluation inputs: the evaluation view of each stored image (and of any encoded image, for
serving) and the frozen backbone's features (one pass serves k-NN, linear and segmentation probes)."""

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


def evaluation_views(reader: ShardReader, size: int) -> torch.Tensor:
    """Every image's evaluation view, in order, decoded once for all the probes and baselines:
    (N, 3, size, size) uint8 when every stored image already is a size x size square (its view is
    its bytes / 255: nothing to interpolate, and a quarter of the memory), else float in [0, 1]."""
    images = [reader.image(i) for i in range(len(reader))]
    if not images:
        return torch.zeros(0, 3, size, size)
    if all(image.shape[1:] == (size, size) for image in images):
        return torch.stack(images)
    return torch.stack([evaluation_view(image, size) for image in images])


def view_batches(views: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
    """(B, 3, S, S) float batches in [0, 1] of ``evaluation_views``: bytes / 255 exactly as
    ``evaluation_view`` computes them."""
    for start in range(0, len(views), batch_size):
        batch = views[start : start + batch_size]
        yield batch.float().div_(255) if batch.dtype == torch.uint8 else batch


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

    probe_inputs: (N, (n + 1) D): the CLS tokens of the last n = min(4, depth) blocks (oldest
        first), then the average of the last block's patch tokens. Every linear-probe variant is
        a column range of it (``variant_columns``), so the probes share one matrix.
    dim: D, the backbone's width.
    patch_tokens: (N, m D, h, w) patch tokens of the last m <= n blocks after the final norm (oldest
        first, D channels each; bf16, to halve memory), or None when none were kept.
    """

    probe_inputs: torch.Tensor
    dim: int
    patch_tokens: torch.Tensor | None = None

    @property
    def variant_columns(self) -> dict[str, slice]:
        """DINOv2's probe inputs: "cls1" (the backbone's output; k-NN uses it), "cls1+avgpool",
        "cls4" (the last n CLS tokens), "cls4+avgpool" → their columns of ``probe_inputs``."""
        dim, blocks = self.dim, self.probe_inputs.shape[1] // self.dim - 1
        last = slice((blocks - 1) * dim, blocks * dim)
        return {"cls1": last, "cls1+avgpool": slice(last.start, last.stop + dim), "cls4": slice(0, blocks * dim),
                "cls4+avgpool": slice(0, (blocks + 1) * dim)}  # fmt: skip

    def variant(self, name: str) -> torch.Tensor:
        """(N, width) view of one probe input, e.g. ``variant("cls1")``."""
        return self.probe_inputs[:, self.variant_columns[name]]

    @property
    def last_patch_tokens(self) -> torch.Tensor:
        """(N, D, h, w): the last block's patch tokens."""
        return self.patch_tokens[:, -self.dim :]

    def segmentation_inputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(patch tokens (N, m D, h, w), CLS tokens (N, m D)) of the same last m blocks: the
        segmentation probe's input (``segmentation.probe_input``)."""
        cls_end = self.variant_columns["cls1"].stop
        return self.patch_tokens, self.probe_inputs[:, cls_end - self.patch_tokens.shape[1] : cls_end]


@torch.no_grad()
def extract_features(
    backbone: nn.Module,
    batches: Iterable[torch.Tensor],
    num_batches: int | None = None,
    desc: str = "features",
    patch_blocks: int = 1,
) -> Features:
    """One pass of the frozen backbone (bf16 autocast) over evaluation views.

    Args:
        batches: (B, 3, S, S) evaluation views in [0, 1] (``evaluation_batches``).
        patch_blocks: keep the patch tokens of the last min(patch_blocks, n) blocks (0: none; they
            cost (h w) times the memory of the CLS tokens).
    """
    backbone.eval()
    inputs, patch = [], []
    # One autocast region for the whole pass: its cache casts each weight to bf16 once, not per batch.
    device = next(backbone.parameters()).device.type
    with torch.autocast(device, dtype=torch.bfloat16):
        for batch in tqdm(batches, total=num_batches, desc=desc, unit="batch", disable=None, leave=False):
            blocks = backbone.forward_intermediates(
                normalize(batch),
                indices=min(4, len(backbone.blocks)),
                norm=True,
                output_fmt="NLC",
                intermediates_only=True,
                return_prefix_tokens=True,
            )  # last 4 blocks: (patch tokens (B, N, D), prefix tokens (B, P, D)), final norm applied
            _keep(blocks, inputs, patch, patch_blocks)
    return Features(torch.cat(inputs), backbone.num_features, torch.cat(patch) if patch_blocks else None)


def _keep(blocks: list[tuple[torch.Tensor, torch.Tensor]], inputs: list, patch: list, patch_blocks: int) -> None:
    """Appends one batch's probe inputs (B, (n + 1) D) fp32 and, for ``patch_blocks`` > 0, its
    (B, m D, h, w) bf16 patch tokens."""
    last = blocks[-1][0]
    inputs.append(torch.cat([*(prefix[:, 0].float() for _, prefix in blocks), last.float().mean(dim=1)], dim=1))
    if patch_blocks:
        side = math.isqrt(last.shape[1])
        grids = [
            p.to(torch.bfloat16).transpose(1, 2).reshape(len(p), -1, side, side) for p, _ in blocks[-patch_blocks:]
        ]
        patch.append(torch.cat(grids, dim=1))
