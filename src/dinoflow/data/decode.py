"""The one definition of how any accepted image becomes 8-bit RGB (and how the manifest says so)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps

SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def conversion_note(mode: str, has_transparency: bool) -> str:
    """What ``to_rgb`` does to an image of this mode, for the manifest's ``note`` column."""
    if mode in SIXTEEN_BIT_MODES:
        return f"{mode} (16-bit) scaled to 8-bit RGB"
    if has_transparency or mode in _ALPHA_MODES:
        return f"{mode} with transparency composited on black, then RGB"
    if mode != "RGB":
        return f"{mode} converted to RGB"
    return ""


def to_rgb(image: Image.Image) -> Image.Image:
    """EXIF-orient, then convert to RGB: 16-bit scaled (not clipped) to 8 bits, transparency
    composited on black, CMYK / palette / grey converted by Pillow."""
    image = ImageOps.exif_transpose(image)
    if image.mode in SIXTEEN_BIT_MODES:
        values = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if values.max() > 255 else 255.0
        grey = np.clip(values / peak * 255.0, 0, 255).round().astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(black, rgba).convert("RGB")
    return image.convert("RGB")
