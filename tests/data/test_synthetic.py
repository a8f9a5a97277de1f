import colorsys

import numpy as np
import pytest
from PIL import Image

from dinoflow.data.synthetic import SHAPE_SETS, SyntheticSpec, class_names, generate, render_sample


def test_generation_is_deterministic_parallel_or_not_and_idempotent(tmp_path):
    spec = SyntheticSpec(num_classes=3, train_per_class=2, val_per_class=1, image_size=24)
    generate(spec, tmp_path / "a", workers=1)
    generate(spec, tmp_path / "b", workers=2)  # one (split, class) per task: same bytes
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.png"))
    assert len(files) == 2 * 3 * 3  # images + masks
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    stamp = (tmp_path / "a" / "synthetic.json").stat().st_mtime_ns
    generate(spec, tmp_path / "a")  # same spec: nothing rewritten
    assert (tmp_path / "a" / "synthetic.json").stat().st_mtime_ns == stamp


def test_layout_and_masks_match_labels(tmp_path):
    spec = SyntheticSpec(num_classes=4, train_per_class=1, val_per_class=1, image_size=32)
    generate(spec, tmp_path)
    for label, name in enumerate(class_names(spec)):
        image = Image.open(tmp_path / "images" / "train" / name / "00000.png")
        mask = np.asarray(Image.open(tmp_path / "masks" / "train" / name / "00000.png"))
        assert image.mode == "RGB" and image.size == (32, 32)
        assert set(np.unique(mask)) == {0, label + 1}


@pytest.mark.parametrize("shapes", sorted(SHAPE_SETS))
def test_every_shape_is_visible_and_distinct(shapes):
    rng = np.random.default_rng(0)
    spec = SyntheticSpec(num_classes=len(SHAPE_SETS[shapes]), image_size=64, shapes=shapes)
    masks = [render_sample(spec, label, rng)[1] > 0 for label in range(spec.num_classes)]
    assert min(m.mean() for m in masks) > 0.03  # the object is never lost outside the frame or too thin
    yy, xx = (np.mgrid[0:64, 0:64] - 31.5) / 28.8
    shape_masks = [fn(xx, yy) for fn in SHAPE_SETS[shapes].values()]
    for a in range(len(shape_masks)):  # unrotated, no two classes share more than 90% of their pixels
        for b in range(a):
            overlap = (shape_masks[a] & shape_masks[b]).sum() / (shape_masks[a] | shape_masks[b]).sum()
            assert overlap < 0.9, (list(SHAPE_SETS[shapes])[a], list(SHAPE_SETS[shapes])[b], overlap)


def test_parts_share_one_silhouette_so_outlines_do_not_tell_them_apart():
    yy, xx = np.mgrid[0:64, 0:64] / 31.5 - 1
    radius = np.hypot(xx, yy)
    for name, fn in SHAPE_SETS["parts"].items():
        inside = fn(xx, yy)
        assert not inside[radius > 0.9].any(), name  # all within the same disc
        assert inside[(radius > 0.8) & (radius <= 0.9)].mean() > 0.3, name  # and reaching its rim


def test_hue_colours_keep_lightness_and_saturation_and_the_figure_lighter():
    luma = np.array([0.299, 0.587, 0.114])
    spec = SyntheticSpec(num_classes=4, image_size=32, texture_strength=0.0, background_noise=0.0, clutter_strokes=0,
                         colours="hue", shapes="parts")  # fmt: skip
    hues = []
    for label in range(4):
        for index in range(25):
            image, mask = render_sample(spec, label, np.random.default_rng([label, index]))
            pixels = image.astype(float) / 255
            obj = pixels[mask > 0].mean(axis=0)
            hue, lightness, saturation = colorsys.rgb_to_hls(*obj)
            assert lightness == pytest.approx(0.7, abs=0.01) and saturation == pytest.approx(0.8, abs=0.02)
            assert (pixels[mask > 0] @ luma).min() > (pixels[mask == 0] @ luma).max() + 0.05
            hues.append(hue)
    assert np.histogram(hues, bins=4, range=(0, 1))[0].min() >= 10  # every quarter of the hue circle


def test_unknown_class_set_or_colour_model_is_refused_in_words():
    with pytest.raises(ValueError, match="shapes must be one of"):
        SyntheticSpec(shapes="blobs")
    with pytest.raises(ValueError, match=r"colours must be one of \['rgb', 'hue'\]"):
        SyntheticSpec(colours="cmyk")


def test_min_contrast_separates_object_from_background_whatever_the_class():
    luma = np.array([0.299, 0.587, 0.114])
    for contrast in (0.0, 0.3):
        spec = SyntheticSpec(num_classes=4, image_size=32, texture_strength=0.0, background_noise=0.0,
                             clutter_strokes=0, min_contrast=contrast)  # fmt: skip
        gaps = []
        for label in range(4):
            for index in range(25):
                image, mask = render_sample(spec, label, np.random.default_rng([label, index]))
                lum = image.astype(float) @ luma / 255
                gaps.append(abs(lum[mask > 0].mean() - lum[mask == 0].mean()))
        if contrast:  # both gradient ends at least 0.3 lighter (or darker) than the object
            assert min(gaps) > 0.25
        else:  # uniform colours: some objects nearly vanish into their background
            assert min(gaps) < 0.05


def test_light_objects_and_centring_options():
    luma = np.array([0.299, 0.587, 0.114])
    spec = SyntheticSpec(num_classes=4, image_size=32, texture_strength=0.0, background_noise=0.0, clutter_strokes=0,
                         min_contrast=0.3, light_objects=True, position_jitter=0.0, min_scale=0.4, max_scale=0.4)  # fmt: skip
    for label in range(4):
        for index in range(10):
            image, mask = render_sample(spec, label, np.random.default_rng([label, index]))
            lum = image.astype(float) @ luma / 255
            assert lum[mask > 0].min() > lum[mask == 0].max()  # lighter than every background pixel
            rows, cols = np.nonzero(mask)
            assert abs(rows.mean() - 15.5) < 3 and abs(cols.mean() - 15.5) < 3  # centred (shapes are not all symmetric)
