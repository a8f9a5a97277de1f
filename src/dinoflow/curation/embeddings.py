"""Image embeddings for curation: every image goes through the evaluation preprocessing
(``eval.features.evaluation_view``: centred square, bicubic resize), then either

- ``pixel_embedding``: a colour thumbnail, each channel centred, standardised per image —
  brightness, contrast, a small colour cast and re-encoding barely move it, while distinct images
  of alike layout but other colours stay apart, which is what copy detection needs (the first
  round, before any backbone exists); or
- ``backbone_embeddings``: the L2-normalised CLS token of a backbone (a registered champion).

Both return (N, V, D) float32 rows of unit norm, V variants per image (the plain view first), so
an inner product is a cosine similarity (faiss ``IndexFlatIP``). ``whiten`` then optionally
rescales either by the folder's own principal components, so that what all images share (a
centred garment's silhouette) stops making distinct images look alike.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms.v2.functional import gaussian_blur
from tqdm import tqdm

from dinoflow.data.decode import WHITE
from dinoflow.data.multicrop import normalize
from dinoflow.eval.features import ImagePreprocessing, image_view
from dinoflow.parallel import process_map

LUMA_WEIGHTS = torch.tensor([0.299, 0.587, 0.114])  # ITU-R BT.601


def unit_rows(x: torch.Tensor) -> np.ndarray:
    """(N, D) → float32 numpy rows of unit L2 norm."""
    return F.normalize(x.float(), dim=1).numpy().astype(np.float32)


def load_view(path: Path, size: int, max_side: int = 64, background: tuple[int, int, int] = WHITE) -> torch.Tensor:
    """A file → (3, size, size) float in [0, 1], exactly as evaluation sees a stored image
    (decoded and shrunk as the dataset node stores it, then ``evaluation_view``)."""
    return image_view(
        path, ImagePreprocessing(size, max_side=max(max_side, size), max_aspect=3.0, background=background)
    )


def crop_variants(view: torch.Tensor, tolerance: float) -> torch.Tensor:
    """(3, S, S) → (V, 3, S, S): the view, then the view with round(tolerance·S) px cut from each
    non-empty subset of its 4 sides and resized back to S (V = 16; 1 when the cut is 0 px). A
    near-copy cropped by up to about that much matches one of its original's variants."""
    cut = round(tolerance * view.shape[-1])
    if cut == 0:
        return view[None]
    size = view.shape[-1]
    crops = [view[:, top : size - bottom, left : size - right]
             for left, top, right, bottom in itertools.product((0, cut), repeat=4)]  # fmt: skip
    return torch.cat([F.interpolate(c[None], size=(size, size), mode="bilinear", antialias=True) for c in crops])


def pixel_embedding(
    views: torch.Tensor, thumbnail: int, colour: bool = True, blur_sigma: float | None = None
) -> torch.Tensor:
    """(..., 3, S, S) in [0, 1] → (..., C·thumbnail²): Gaussian-blurred (``blur_sigma`` px of the
    view, so a pixel of shift costs little; by default 1.5 px in colour, where a JPEG re-encode
    smears hue over 2 px as it keeps chroma at half resolution, and 1 px in grey), area-averaged to
    ``thumbnail`` px, each channel centred on its own mean (brightness and a colour cast's offset
    go), unit norm (a constant image maps to zeros and matches nothing).

    ``colour``: the three RGB channels (C = 3). Distinct images of alike layout (the demo's light
    objects on darker grounds) differ mostly in their hues: grey thumbnails took 40% of the demo
    data as copies (README "Curate your data"). Off: luma only (C = 1, ITU-R BT.601), for ``whiten``
    on a folder of grey photos, whose lack of colour variation would make whitening weigh a colour
    cast's hue up."""
    lead = views.shape[:-3]
    flat = views.reshape(-1, 3, *views.shape[-2:])
    if not colour:
        flat = torch.einsum("c,nchw->nhw", LUMA_WEIGHTS, flat)[:, None]
    sigma = (1.5 if colour else 1.0) if blur_sigma is None else blur_sigma
    if sigma > 0:
        flat = gaussian_blur(flat, [2 * math.ceil(3 * sigma) + 1] * 2, [sigma] * 2)
    small = F.adaptive_avg_pool2d(flat, thumbnail)
    centred = (small - small.mean((2, 3), keepdim=True)).flatten(1)
    return (centred / centred.norm(dim=1, keepdim=True).clamp_min(1e-6)).reshape(*lead, -1)


def _pixel_rows(path: Path, size: int, thumbnail: int, tolerance: float, max_side: int,
                background: tuple[int, int, int], colour: bool) -> np.ndarray:  # fmt: skip
    # One thread per worker process: a forked child inherits the parent's OpenMP pool state, and
    # more threads than cores spin against each other.
    torch.set_num_threads(1)
    view = load_view(path, size, max_side, background)
    return pixel_embedding(crop_variants(view, tolerance), thumbnail, colour).numpy()


def pixel_embeddings(
    paths: Sequence[Path], size: int = 32, thumbnail: int = 8, tolerance: float = 0.06, max_side: int = 64,
    background: tuple[int, int, int] = WHITE, colour: bool = True, workers: int = 1, progress: bool = False,
) -> np.ndarray:  # fmt: skip
    """(N, V, D) float32 unit rows of ``pixel_embedding``: each image's ``crop_variants``,
    the plain view first (V = 1 when ``tolerance`` cuts no pixel). Decoded in ``workers`` processes."""
    rows = partial(_pixel_rows, size=size, thumbnail=thumbnail, tolerance=tolerance, max_side=max_side,
                   background=background, colour=colour)  # fmt: skip
    out = list(tqdm(process_map(rows, paths, workers=workers, chunksize=64), total=len(paths),
                    desc="embed (pixels)", unit="img", disable=not progress, mininterval=1.0))  # fmt: skip
    if not out:
        empty = pixel_embedding(crop_variants(torch.zeros(3, size, size), tolerance), thumbnail, colour)
        return np.zeros((0, *empty.shape), np.float32)
    return np.stack(out).astype(np.float32)


def whiten(vectors: np.ndarray, shrinkage: float) -> np.ndarray:
    """(N, V, D) unit rows → (N, V, D) unit rows in the shrunk PCA-whitened basis of the plain views
    (variant 0): x ↦ Λ_s^(-1/2) Uᵀ (x − μ), with C = U Λ Uᵀ the covariance of the plain views and
    Λ_s = Λ + shrinkage · max(Λ) (ridge shrinkage: directions of almost no variance are not blown
    up into noise). Directions every image varies along count less, rare ones more: two distinct
    look-alike photos differ in a rare direction and stop being near-copies, while a re-encode or a
    colour cast moves every direction little (a small crop does not: it shifts the fine detail that
    whitening weighs up, README "Curate your data"). Fitted on the folder itself (train and val), so
    the same images give the same vectors."""
    if len(vectors) < 2:
        return vectors
    plain = torch.from_numpy(vectors[:, 0]).double()
    eigenvalues, basis = torch.linalg.eigh(torch.cov(plain.T))
    if eigenvalues.max() <= 0:
        return vectors  # all images alike: no direction to weigh
    projection = (basis * (eigenvalues.clamp_min(0) + shrinkage * eigenvalues.max()).rsqrt()).float()
    mean, out = plain.mean(0).float(), np.empty_like(vectors)
    for start in range(0, len(vectors), 4096):  # in chunks: (N, V, D) may be most of the memory
        chunk = torch.from_numpy(vectors[start : start + 4096])
        out[start : start + 4096] = F.normalize((chunk - mean) @ projection, dim=2).numpy()
    return out


@torch.no_grad()
def backbone_embeddings(
    backbone: nn.Module, paths: Sequence[Path], size: int, max_side: int = 64,
    background: tuple[int, int, int] = WHITE, batch_size: int = 256, progress: bool = False,
) -> np.ndarray:  # fmt: skip
    """(N, 1, D) float32 unit rows (one variant: the plain view): the backbone's output (CLS token, D = embed dim) on each image's
    evaluation view, ImageNet-normalised, under bf16 autocast as ``extract_features`` does."""
    backbone.eval()
    out = []
    for start in tqdm(range(0, len(paths), batch_size), desc="embed (backbone)", unit="batch", disable=not progress):
        views = torch.stack([load_view(p, size, max_side, background) for p in paths[start : start + batch_size]])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out.append(backbone(normalize(views)).float())
    return unit_rows(torch.cat(out))[:, None] if out else np.zeros((0, 1, 0), np.float32)
