"""The one definition of how any accepted image becomes 8-bit RGB (and how the manifest says so)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps, ImageStat

SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
NAMED_BACKGROUNDS = {"white": (255, 255, 255), "black": (0, 0, 0)}
WHITE = NAMED_BACKGROUNDS["white"]


def parse_background(text: str) -> tuple[int, int, int]:
    """``"white"``, ``"black"`` or ``"R,G,B"`` (each 0-255) → an RGB triple.

    Raises:
        ValueError: naming the accepted forms and the value given.
    """
    name = str(text).strip().lower()
    if name in NAMED_BACKGROUNDS:
        return NAMED_BACKGROUNDS[name]
    parts = name.split(",")
    if len(parts) == 3 and all(p.strip().isdigit() and int(p) <= 255 for p in parts):
        return tuple(int(p) for p in parts)  # type: ignore[return-value]
    raise ValueError(
        f"alpha background must be 'white', 'black' or 'R,G,B' with each value in 0..255 (e.g. '128,128,128'); "
        f"got {text!r}"
    )


def background_name(background: tuple[int, int, int]) -> str:
    """``(255, 255, 255)`` → ``"white"``; a triple without a name → ``"RGB(r,g,b)"``."""
    names = {rgb: name for name, rgb in NAMED_BACKGROUNDS.items()}
    return names.get(tuple(background), "RGB({},{},{})".format(*background))


def conversion_note(mode: str, has_transparency: bool, background: tuple[int, int, int] = WHITE) -> str:
    """What ``to_rgb`` does to an image of this mode, for the manifest's ``note`` column."""
    if mode in SIXTEEN_BIT_MODES:
        return f"{mode} (16-bit) scaled to 8-bit RGB"
    if has_transparency or mode in _ALPHA_MODES:
        return f"{mode} with transparency composited on {background_name(background)}, then RGB"
    if mode != "RGB":
        return f"{mode} converted to RGB"
    return ""


def to_rgb(image: Image.Image, background: tuple[int, int, int] = WHITE) -> Image.Image:
    """EXIF-orient, then convert to RGB: 16-bit scaled (not clipped) to 8 bits, transparency
    composited on ``background`` (white by default, as viewers show it), CMYK / palette / grey
    converted by Pillow."""
    image = ImageOps.exif_transpose(image)
    if image.mode in SIXTEEN_BIT_MODES:
        values = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if values.max() > 255 else 255.0
        grey = np.clip(values / peak * 255.0, 0, 255).round().astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        ground = Image.new("RGBA", rgba.size, (*background, 255))
        return Image.alpha_composite(ground, rgba).convert("RGB")
    return image.convert("RGB")


def pixel_std(rgb: Image.Image) -> float:
    """Largest per-channel standard deviation of an RGB image's pixels (0-255 scale), from the
    histogram: no copy of the pixels. Near 0 means a blank (near-uniform) image."""
    return float(max(ImageStat.Stat(rgb).stddev))
