"""What curation did, as pictures: the near-duplicate groups (kept copy first), the cluster-size
histogram before and after balanced sampling, and a few images of each top-level cluster."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure  # not pyplot: no GUI backend or global figure state on servers
from PIL import Image

from dinoflow.curation.embeddings import load_view
from dinoflow.eval.pictures import figure_image, grid_image

TILE_SOURCE_PX = 64


def _picture(path: Path) -> np.ndarray:
    return load_view(path, TILE_SOURCE_PX).permute(1, 2, 0).numpy()


def image_rows(rows: Sequence[Sequence[Path]], tile: int = 64) -> Image.Image:
    """One picture, a row of tiles per sequence of image files."""
    return grid_image([[_picture(p) for p in row] for row in rows], tile=tile)


def cluster_size_histogram(before: Sequence[int], after: Sequence[int]) -> Image.Image:
    """Cluster sizes, largest first, before and after sampling (one bar pair per cluster)."""
    order = np.argsort(before)[::-1]
    figure = Figure(figsize=(7.0, 3.0), layout="tight")
    axis = figure.subplots()
    x = np.arange(len(order))
    axis.bar(x, np.asarray(before)[order], width=1.0, alpha=0.5, label="before")
    axis.bar(x, np.asarray(after)[order], width=0.6, label="after")
    axis.set_xlabel("cluster (largest first)", fontsize=8)
    axis.set_ylabel("images", fontsize=8)
    axis.set_title("finest-level cluster sizes", fontsize=9)
    axis.tick_params(labelsize=7)
    axis.legend(fontsize=7)
    return figure_image(figure)
