"""Batched multi-crop augmentation on uint8 image tensors (DINO recipe).

Every op works on a whole batch at once, with per-sample random parameters, on whatever device
the batch lives on (only the crop-and-resize loops over images, one vectorised kernel call each):
no PIL round-trips, no decoding. On a 2-core CPU a PIL pipeline in a loader worker competes with
the model for the cores; these tensor ops cost a few percent of a training step.

Per view, as in DINO (``main_dino.py`` DataAugmentationDINO):

=========  =========================  ======  =========
view       crop scale                 blur p  solarize p
=========  =========================  ======  =========
global 1   RandomResizedCrop (0.4, 1)  1.0     0.0
global 2   RandomResizedCrop (0.4, 1)  0.1     0.2
local x N  RandomResizedCrop (0.05,.4) 0.5     0.0
=========  =========================  ======  =========

shared: horizontal flip 0.5, colour jitter (0.4, 0.4, 0.2, 0.1) with p 0.8, grayscale 0.2; then
blur, then solarize, as in DINO. We keep DINO's blur probabilities; DINOv2/DINOv3 code inverts
them by accident (global 1: 0.0, global 2: 0.9, dinov2 PR #411).

Each colour / blur op computes what torchvision's functional op of the same name computes on one
float image (checked in ``tests/data/test_multicrop_torchvision.py``), with a per-sample factor.
Two deliberate differences: the jitter runs in the fixed order brightness, contrast, saturation,
hue (torchvision's ColorJitter draws a random order per image); and the blur sigma range
U(0.1, 2.0), defined for 224 px crops, is scaled with the crop size (so a 32 px crop is not
blurred flat), with the kernel side scaled alike: 10% of the crop side, odd (23 px at 224, the
SimCLR/BYOL convention; DINO itself uses PIL's untruncated blur). The kernel radius is then
>= 3.5 sigma at every crop >= 20 px (5.5 at 224), and below that sigma < 0.18 px: no blur.

Every random number of a sample comes from a generator seeded by that sample's own seed (the
training loop derives it from (seed, epoch, sample index)), so a sample's views do not depend
on the batch it lands in, the number of ranks, or where a run was resumed.

- [0]: Caron et al., DINO, 2021, https://arxiv.org/abs/2104.14294 (§3.1, App. E)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# ITU-R 601-2 luma weights, red rounded to 0.2989 as torchvision's rgb_to_grayscale does.
_LUMA = (0.2989, 0.587, 0.114)
BLUR_SIGMA = (0.1, 2.0)  # DINO's Gaussian blur sigma range in px at 224 px crops, scaled with the crop
# Hue of the primaries R, G, B in sixths of a turn (HSV's colour hexagon).
_PRIMARY_HUES = (0.0, 2.0, 4.0)


# Per view and sample, the uniform draws in this order (columns of the (B, V, _DRAWS) tensor).
(
    _AREA,
    _RATIO,
    _X0,
    _Y0,
    _FLIP,
    _JITTER,
    _BRIGHT,
    _CONTRAST,
    _SAT,
    _HUE,
    _GRAY,
    _SIGMA,
    _BLUR,
    _SOLAR,
) = range(14)
_DRAWS = 14
_ROTATE = 14


def per_sample_uniforms(seeds: Sequence[int], num_views: int) -> torch.Tensor:
    """(B, V, 15) uniforms in [0, 1); row i depends only on ``seeds[i]``."""
    return torch.stack([_sample_uniforms(torch.Generator().manual_seed(int(s)), num_views) for s in seeds])


def _sample_uniforms(generator: torch.Generator, num_views: int) -> torch.Tensor:
    # The rotation draw comes after the 14 original ones, so a seed's other draws (and every
    # run without rotation) stay what they were before rotation existed.
    return torch.cat(
        [torch.rand(num_views, _DRAWS, generator=generator), torch.rand(num_views, 1, generator=generator)], 1
    )


def _between(u: torch.Tensor, low: float, high: float) -> torch.Tensor:
    return low + u * (high - low)


def random_resized_crop_boxes(
    u: torch.Tensor, height: torch.Tensor, width: torch.Tensor, scale: tuple[float, float]
) -> torch.Tensor:
    """(B, 4) boxes ``x0, y0, x1, y1`` with area fraction in ``scale`` and aspect in [3/4, 4/3],
    inside each image's own (height, width).

    Args:
        u: (B, 14) this view's uniforms.
        height, width: (B,) float image sizes.
    """
    area = _between(u[:, _AREA], *scale) * height * width
    ratio = torch.exp(_between(u[:, _RATIO], math.log(3 / 4), math.log(4 / 3)))
    w = torch.minimum(torch.sqrt(area * ratio).clamp(min=1.0), width)
    h = torch.minimum(torch.sqrt(area / ratio).clamp(min=1.0), height)
    x0 = u[:, _X0] * (width - w)
    y0 = u[:, _Y0] * (height - h)
    return torch.stack([x0, y0, x0 + w, y0 + h], dim=1)


def _colour_jitter(x: torch.Tensor, strength: float, u: torch.Tensor, hue: float) -> torch.Tensor:
    """ColorJitter(0.4, 0.4, 0.2, ``hue``) x ``strength`` of (B, 3, S, S) in [0, 1], each sample
    with the factors of its own uniforms ``u`` (B, 15); ``x`` is overwritten."""

    def factor(column: int, amount: float) -> torch.Tensor:
        return _between(u[:, column], 1 - amount * strength, 1 + amount * strength)

    x = adjust_brightness(x, factor(_BRIGHT, 0.4))
    x = adjust_contrast(x, factor(_CONTRAST, 0.4))
    x = adjust_saturation(x, factor(_SAT, 0.2))
    return adjust_hue(x, _between(u[:, _HUE], -hue * strength, hue * strength))


def _per_sample(factor: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return factor.to(x.device, x.dtype).view(-1, 1, 1, 1)


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB → (B, 1, H, W) luma (torchvision ``rgb_to_grayscale``)."""
    r, g, b = x.unbind(1)
    return (r * _LUMA[0] + g * _LUMA[1] + b * _LUMA[2]).unsqueeze(1)


def _blend(x: torch.Tensor, other: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    # ratio * x + (1 - ratio) * other, clamped: torchvision's contrast and saturation definition.
    ratio = _per_sample(ratio, x)
    return x.mul_(ratio).add_(other * (1 - ratio)).clamp_(0, 1)


def adjust_brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in [0, 1] scaled by ``factor`` (B,), clamped; ``x`` is overwritten."""
    return x.mul_(_per_sample(factor, x)).clamp_(0, 1)


def adjust_contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) blended with each image's mean grey level by ``factor`` (B,); ``x`` overwritten."""
    return _blend(x, grayscale(x).mean((1, 2, 3), keepdim=True), factor)


def adjust_saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) blended with its own grey image by ``factor`` (B,); ``x`` is overwritten."""
    return _blend(x, grayscale(x), factor)


def adjust_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB in [0, 1] with each sample's HSV hue turned by ``shift`` (B,) turns
    (torchvision ``adjust_hue``: saturation and value kept). Returns a new tensor.

    A hue shift keeps each pixel's value (max channel) and chroma (max - min), so RGB comes back
    in closed form: a channel is at the value within one sixth of a turn of its primary's hue,
    at value - chroma from two sixths on, linear between. Elementwise only, no per-sector table.
    """
    r, g, b = x.unbind(1)
    value = torch.maximum(torch.maximum(r, g), b)
    chroma = value - torch.minimum(torch.minimum(r, g), b)
    # Hue in sixths from red; ties between maxima give the same hue. (torch.where and
    # torch.remainder are slow on CPU: both run on one plane, not three.)
    red, green = value == r, value == g
    sixths = torch.where(red, g - b, torch.where(green, b - r + 2 * chroma, r - g + 4 * chroma))
    sixths = sixths.div_(chroma.clamp(min=1e-12)).add_(6 * _per_sample(shift, x)[:, 0])  # grey: 0 / tiny
    sixths = torch.remainder(sixths, 6.0).unsqueeze(1)
    primaries = torch.tensor(_PRIMARY_HUES, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    distance = (sixths - primaries).abs_()
    distance = torch.minimum(distance, 6 - distance)  # around the circle
    return distance.sub_(1).clamp_(0, 1).mul_(-chroma.unsqueeze(1)).add_(value.unsqueeze(1))


def blur_kernel_size(size: int) -> int:
    """Odd Gaussian kernel side for an S px crop: 10% of S rounded down to odd (SimCLR's rule,
    torchvision's DINO recipes), cut at 3 of the largest sigma (``BLUR_SIGMA`` at 224 px, scaled
    with S): the weights beyond hold about 0.1% of the kernel and cost half the blur's time at
    224 px. 224 → 13, 96 → 7, 64 → 5, 32 → 3, 16 → 1 (no blur: sigma is < 0.15 px there)."""
    ten_percent = int(0.1 * size) // 2 * 2 + 1
    three_sigma = 2 * math.ceil(3 * BLUR_SIGMA[1] * size / 224) + 1
    return min(ten_percent, three_sigma)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """(B, C, H, W) blurred with a ``kernel_size`` Gaussian of each sample's ``sigma`` (B,),
    reflect-padded (torchvision ``gaussian_blur``). Separable: two 1-D passes, one grouped conv
    each for the whole batch. Returns a new tensor (``x`` itself for kernel size 1)."""
    radius = kernel_size // 2
    if radius == 0:
        return x
    b, c, h, w = x.shape
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-(offsets[None] ** 2) / (2 * sigma.double()[:, None] ** 2))
    kernel = (kernel / kernel.sum(1, keepdim=True)).to(x.device, x.dtype)  # centre weight 1: no 0/0
    weights = kernel.repeat_interleave(c, dim=0)  # (B*C, K)
    y = F.pad(x.reshape(1, b * c, h, w), (radius, radius, radius, radius), mode="reflect")
    y = F.conv2d(y, weights.view(b * c, 1, 1, -1), groups=b * c)
    y = F.conv2d(y, weights.view(b * c, 1, -1, 1), groups=b * c)
    return y.view(b, c, h, w)


def solarize(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) in [0, 1], values >= 0.5 inverted (torchvision ``solarize`` at 0.5)."""
    return torch.where(x >= 0.5, 1.0 - x, x)


class MultiCropAugmentation:
    """2 global + N local views of a uint8 batch, normalised for the network.

    Args:
        global_size / local_size: output side in pixels.
        global_scale / local_scale: area fraction range of RandomResizedCrop.
        local_number: N local views.
        jitter_strength: scales DINO's colour-jitter magnitudes (1.0 = DINO).
        hue_jitter: largest hue shift in turns before ``jitter_strength`` scales it (DINO: 0.1;
            0.5 reaches every hue). Where hue is a random per-image identity (the embedded data's
            colours), a full hue shift stops two views of one image from matching by colour.
        grayscale_prob: probability of a grayscale view (DINO: 0.2). When colour is a per-image
            identity (random colours), more grayscale views push the network to shapes.
        rotation_degrees: each view is rotated by an angle drawn in [-r, r] (0: off, as in DINO).
            For data without an upright orientation (clip-art, microscopy, aerial, the embedded
            shapes), so views of one object at two angles are trained to agree.
    """

    def __init__(
        self,
        global_size: int,
        global_scale: tuple[float, float],
        local_size: int,
        local_scale: tuple[float, float],
        local_number: int,
        jitter_strength: float = 1.0,
        hue_jitter: float = 0.1,
        grayscale_prob: float = 0.2,
        rotation_degrees: float = 0.0,
    ) -> None:
        self.views = [(global_size, global_scale, 1.0, 0.0), (global_size, global_scale, 0.1, 0.2)]
        self.views += [(local_size, local_scale, 0.5, 0.0)] * local_number
        self.jitter_strength, self.hue_jitter, self.grayscale_prob = jitter_strength, hue_jitter, grayscale_prob
        self.rotation_degrees = rotation_degrees

    @property
    def num_views(self) -> int:
        return len(self.views)

    def __call__(
        self, images: torch.Tensor, seeds: Sequence[int], sizes: torch.Tensor | None = None
    ) -> list[torch.Tensor]:
        """Args:
            images: (B, 3, H, W) uint8, each image in the top-left (h_i, w_i) of its slot.
            seeds: B per-sample seeds.
            sizes: (B, 2) (h_i, w_i); None when every image fills (H, W).

        Returns:
            V tensors (B, 3, S_v, S_v) float32, global views first.
        """
        u = per_sample_uniforms(seeds, self.num_views)
        if sizes is None:
            sizes = torch.tensor(images.shape[-2:]).expand(len(images), 2)
        sizes = sizes.float().cpu()
        return [
            self._view(images, sizes, size, scale, blur_p, sol_p, u[:, v])
            for v, (size, scale, blur_p, sol_p) in enumerate(self.views)
        ]

    def _view(self, x, sizes, size, scale, blur_p, solarize_p, u: torch.Tensor) -> torch.Tensor:
        boxes = random_resized_crop_boxes(u, sizes[:, 0], sizes[:, 1], scale)
        view = crop_and_resize(x, boxes, size)
        if self.rotation_degrees > 0:
            view = rotate(view, _between(u[:, _ROTATE], -self.rotation_degrees, self.rotation_degrees))
        view = _on_drawn(view, u[:, _FLIP] < 0.5, lambda v, _: v.flip(-1))
        if self.jitter_strength > 0:
            jitter, hue = self.jitter_strength, self.hue_jitter
            view = _on_drawn(view, u[:, _JITTER] < 0.8, lambda v, drawn: _colour_jitter(v, jitter, u[drawn], hue))
        view = _on_drawn(view, u[:, _GRAY] < self.grayscale_prob, lambda v, _: grayscale(v).repeat(1, 3, 1, 1))
        sigma, kernel = _between(u[:, _SIGMA], *BLUR_SIGMA) * size / 224, blur_kernel_size(size)
        view = _on_drawn(view, u[:, _BLUR] < blur_p, lambda v, drawn: gaussian_blur(v, sigma[drawn], kernel))
        view = _on_drawn(view, u[:, _SOLAR] < solarize_p, lambda v, _: solarize(v))
        return normalize(view, inplace=True)


def _on_drawn(view: torch.Tensor, drawn: torch.Tensor, op) -> torch.Tensor:
    """Apply ``op(samples, indices)`` to the samples whose draw is True (B,) bool; the others
    pay nothing (most views draw few or none of flip, grayscale, blur, solarize). ``view`` is
    updated in place."""
    index = drawn.nonzero().flatten()
    if len(index) == 0:
        return view
    if len(index) == len(view):
        return op(view, index)
    on_device = index.to(view.device)
    return view.index_copy_(0, on_device, op(view.index_select(0, on_device), index))


def rotate(views: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """(B, 3, S, S) views rotated about their centres by ``degrees`` (B,) (counter-clockwise),
    bilinear, with reflected borders so no constant-colour corners mark a rotated view."""
    angle = torch.deg2rad(degrees).to(views.device, views.dtype)
    cos, sin, zero = angle.cos(), angle.sin(), torch.zeros_like(angle)
    # affine_grid maps output to input coordinates: the inverse rotation.
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta, list(views.shape), align_corners=False)
    return F.grid_sample(views, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def crop_and_resize(images: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Each image's box, resized to (size, size), as torchvision's RandomResizedCrop does on
    tensors (whole-pixel boxes).

    Args:
        images: (B, 3, H, W) uint8; boxes: (B, 4) ``x0, y0, x1, y1``.

    Returns:
        (B, 3, size, size) float in [0, 1].
    """
    boxes = boxes.round()
    if images.device.type == "cpu":
        return _crop_and_resize_per_image(images, boxes, size)
    return _crop_and_resize_batched(images, boxes, size)


def _crop_and_resize_per_image(images: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    # On CPU the uint8 antialiased bilinear kernel is vectorised: ~4x faster than torchvision's
    # roi_align (measured, benchmarks/multicrop.py), one call per image.
    views = []
    for image, (x0, y0, x1, y1) in zip(images, boxes.long().tolist(), strict=True):
        crop = image[None, :, y0 : max(y1, y0 + 1), x0 : max(x1, x0 + 1)]
        views.append(F.interpolate(crop, size=(size, size), mode="bilinear", antialias=True, align_corners=False))
    return torch.cat(views).float().div_(255).clamp_(0, 1)


def _crop_and_resize_batched(images: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    # On a GPU one call per image is launch-bound (measured on an H200: 1,024 resize kernels per
    # demo step, the device idle ~90% of the step): roi_align does the whole batch in one kernel,
    # averaging ceil(box / size) samples per output pixel, which antialiases downscaling as well.
    from torchvision.ops import roi_align

    x0, y0, x1, y1 = boxes.unbind(1)
    boxes = torch.stack([x0, y0, torch.maximum(x1, x0 + 1), torch.maximum(y1, y0 + 1)], 1)
    rois = torch.cat([torch.arange(len(boxes), dtype=boxes.dtype)[:, None], boxes], 1).to(images.device)
    views = roi_align(images.float(), rois, output_size=size, spatial_scale=1.0, sampling_ratio=-1, aligned=True)
    return views.div_(255).clamp_(0, 1)


def normalize(x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """(B, 3, H, W) in [0, 1] → ImageNet-standardised (``inplace``: overwrite ``x``)."""
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return x.sub_(mean).div_(std) if inplace else (x - mean) / std
