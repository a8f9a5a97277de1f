"""Transparency is composited on the configured background; the pixel spread finds blank images."""

import numpy as np
import pytest
from PIL import Image, ImageDraw

from dinoflow.data.decode import background_name, conversion_note, parse_background, pixel_std, to_rgb


def line_art(size: int = 48) -> Image.Image:
    """Black strokes on a fully transparent background, as clip art is drawn."""
    image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.ellipse((8, 8, size - 8, size - 8), outline=(0, 0, 0, 255), width=3)
    draw.line((0, size // 2, size, size // 2), fill=(0, 0, 0, 255), width=2)
    return image


def test_line_art_on_white_keeps_its_strokes_and_on_black_is_blank():
    on_white = to_rgb(line_art())
    assert np.asarray(on_white).max() == 255 and np.asarray(on_white).min() == 0
    assert pixel_std(on_white) > 50
    on_black = to_rgb(line_art(), parse_background("black"))
    assert np.asarray(on_black).max() == 0 and pixel_std(on_black) == 0.0


def test_a_custom_background_fills_the_transparent_pixels():
    rgb = to_rgb(Image.new("LA", (4, 4), (0, 0)), parse_background("10, 20,30"))
    assert rgb.mode == "RGB" and np.asarray(rgb).reshape(-1, 3).tolist() == [[10, 20, 30]] * 16


def test_half_transparent_pixels_are_blended_with_the_background():
    rgb = np.asarray(to_rgb(Image.new("RGBA", (2, 2), (0, 0, 0, 128))))
    assert abs(int(rgb[0, 0, 0]) - 127) <= 1


@pytest.mark.parametrize("text", ["grey", "256,0,0", "1,2", "-1,0,0", "a,b,c", ""])
def test_a_wrong_background_names_the_accepted_forms_and_the_value(text):
    with pytest.raises(ValueError, match=r"'white', 'black' or 'R,G,B'.*got") as error:
        parse_background(text)
    assert repr(text) in str(error.value)


def test_the_note_names_the_background():
    assert conversion_note("RGBA", False) == "RGBA with transparency composited on white, then RGB"
    assert conversion_note("P", True, (0, 0, 0)).endswith("composited on black, then RGB")
    assert background_name((1, 2, 3)) == "RGB(1,2,3)"


def test_pixel_std_is_the_largest_channel_spread():
    half = np.zeros((4, 4, 3), dtype=np.uint8)
    half[:2, :, 2] = 200  # only blue varies: 0 or 200, std 100
    assert pixel_std(Image.fromarray(half)) == pytest.approx(100.0)
    assert pixel_std(Image.new("RGB", (8, 8), (9, 99, 199))) == 0.0
