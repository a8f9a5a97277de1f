"""Block-wise patch masking for iBOT / DINOv2 (BEiT-style rectangles).

- [0]: Bao et al., BEiT, 2021, https://arxiv.org/abs/2106.08254 (blockwise masking)
- [1]: Oquab et al., DINOv2, 2023, https://arxiv.org/abs/2304.07193 (``data/masking.py``, ``collate.py``)
"""

from __future__ import annotations

import math

import numpy as np
import torch


class BlockMaskGenerator:
    """Masks about ``num_masked`` patches of an (H, W) grid with random rectangles.

    Rectangles hold at least ``min_patches`` patches and have a log-uniform aspect ratio in
    [min_aspect, 1 / min_aspect]; they may overlap, and drawing stops when no rectangle adds
    patches (so the count can fall short of the target on tiny grids).

    Args:
        grid: (H, W) patches per side.
        min_patches: smallest rectangle (DINOv2: 4).
        max_patches: largest rectangle (DINOv2: half the grid).
        min_aspect: 0.3 in BEiT/DINOv2.
    """

    def __init__(
        self,
        grid: tuple[int, int],
        min_patches: int = 4,
        max_patches: int | None = None,
        min_aspect: float = 0.3,
    ) -> None:
        self.height, self.width = grid
        self.min_patches = min_patches
        self.max_patches = max_patches or (self.height * self.width) // 2
        self.log_aspect = (math.log(min_aspect), math.log(1 / min_aspect))

    def _add_rectangle(self, mask: np.ndarray, budget: int, rng: np.random.Generator) -> int:
        for _ in range(10):
            area = rng.uniform(self.min_patches, max(budget, self.min_patches))
            aspect = math.exp(rng.uniform(*self.log_aspect))
            h, w = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
            if 0 < h < self.height and 0 < w < self.width:
                top, left = (
                    rng.integers(0, self.height - h + 1),
                    rng.integers(0, self.width - w + 1),
                )
                window = mask[top : top + h, left : left + w]
                new = h * w - int(window.sum())
                if 0 < new <= budget:
                    window[:] = True
                    return new
        return 0

    def __call__(self, num_masked: int, rng: np.random.Generator) -> np.ndarray:
        """Returns an (H, W) bool mask with at most ``num_masked`` True entries."""
        mask = np.zeros((self.height, self.width), dtype=bool)
        count = 0
        while count < num_masked:
            added = self._add_rectangle(mask, min(num_masked - count, self.max_patches), rng)
            if added == 0:
                break
            count += added
        return mask


def sample_batch_masks(
    generator: BlockMaskGenerator,
    num_images: int,
    ratio_range: tuple[float, float],
    masked_share: float,
    rng: np.random.Generator,
) -> torch.Tensor:
    """Masks for a batch of global crops, as DINOv2's collate does.

    ``int(num_images * masked_share)`` images get a mask whose ratio is stratified over
    ``ratio_range`` (image i draws from the i-th of n equal bins); the others get none; the
    order is shuffled.

    Returns:
        (num_images, H * W) bool.
    """
    num_patches = generator.height * generator.width
    n_masked = int(num_images * masked_share)
    bins = np.linspace(*ratio_range, n_masked + 1)
    masks = [generator(int(num_patches * rng.uniform(bins[i], bins[i + 1])), rng) for i in range(n_masked)]
    masks += [np.zeros((generator.height, generator.width), dtype=bool)] * (num_images - n_masked)
    order = rng.permutation(num_images)
    return torch.from_numpy(np.stack([masks[i] for i in order]).reshape(num_images, num_patches))
