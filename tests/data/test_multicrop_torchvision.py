"""Our batched colour / blur ops against torchvision's per-image functional ops.

Each op gets a batch of random float images in [0, 1] and one factor per sample; torchvision's
``transforms.v2.functional`` op runs image by image with that sample's factor. Tolerance: atol
1e-5 in [0, 1] units (fp32; the ops differ only in rounding order), 1e-5 / std once normalised.
"""

import pytest
import torch
import torchvision.transforms.v2.functional as TF

from dinoflow.data import multicrop as mc

ATOL = 1e-5


def images(n=8, h=20, w=24, seed=0):
    return torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(seed))


def per_image(op, x, factors):
    return torch.stack([op(img, float(f)) for img, f in zip(x, factors, strict=True)])


def assert_matches(ours, theirs, atol=ATOL):
    torch.testing.assert_close(ours, theirs, atol=atol, rtol=0)


@pytest.mark.parametrize(
    ("ours", "theirs", "low", "high"),
    [
        (mc.adjust_brightness, TF.adjust_brightness, 0.6, 1.4),
        (mc.adjust_contrast, TF.adjust_contrast, 0.6, 1.4),
        (mc.adjust_saturation, TF.adjust_saturation, 0.8, 1.2),
        (mc.adjust_saturation, TF.adjust_saturation, 0.0, 2.0),  # beyond DINO's range: clamping
    ],
)
def test_jitter_factor_ops_match_torchvision(ours, theirs, low, high):
    x = images()
    factors = torch.linspace(low, high, len(x))
    assert_matches(ours(x.clone(), factors), per_image(theirs, x, factors))


def test_hue_is_torchvision_hsv_shift_per_sample():
    # Random colours, plus pixels torchvision special-cases: grey (no hue), ties between the
    # maximum channels, primaries, black and white; shifts over the whole [-0.5, 0.5] range.
    x = images(n=11, seed=1)
    x[:, :, 0, :3] = torch.tensor([0.5, 0.5, 0.5])[:, None]
    x[:, :, 1, :4] = torch.tensor([[0.8, 0.8, 0.2, 0.0], [0.8, 0.2, 0.8, 1.0], [0.1, 0.8, 0.8, 1.0]])
    x[:, :, 2, :3] = torch.eye(3)
    x[:, :, 3, 0], x[:, :, 3, 1] = 0.0, 1.0
    x = torch.cat([x, (x * 255).round() / 255])  # quantised: many exact ties, as from uint8
    shifts = torch.linspace(-0.5, 0.5, len(x))
    assert_matches(mc.adjust_hue(x, shifts), per_image(TF.adjust_hue, x, shifts))


def test_hue_turns_red_towards_yellow():
    red = torch.zeros(1, 3, 1, 1)
    red[0, 0] = 1.0
    assert mc.adjust_hue(red, torch.tensor([1 / 6])).flatten().tolist() == pytest.approx([1.0, 1.0, 0.0], abs=1e-6)


def test_grayscale_and_solarize_match_torchvision():
    x = images()
    assert_matches(mc.grayscale(x), TF.rgb_to_grayscale(x))
    assert_matches(mc.solarize(x), TF.solarize(x, 0.5))


@pytest.mark.parametrize(("size", "kernel"), [(224, 13), (96, 7), (64, 5), (32, 3)])
def test_gaussian_blur_matches_torchvision(size, kernel):
    """Kernel side 10% of the crop, odd, cut at 3 of the largest sigma; sigma U(0.1, 2) at 224 px,
    scaled with the crop; reflect padding."""
    assert mc.blur_kernel_size(size) == kernel
    x = images(n=4, h=size, w=size, seed=2)
    sigma = torch.tensor([0.1, 0.7, 1.4, 2.0]) * size / 224
    theirs = torch.stack([TF.gaussian_blur(img, [kernel, kernel], [float(s)]) for img, s in zip(x, sigma, strict=True)])
    assert_matches(mc.gaussian_blur(x, sigma, kernel), theirs)
    # A sample's blur does not depend on the sigmas of the other samples in its batch.
    assert torch.equal(mc.gaussian_blur(x[:1], sigma[:1], kernel), mc.gaussian_blur(x, sigma, kernel)[:1])


@pytest.mark.parametrize(("size", "ten_percent"), [(224, 23), (96, 9), (64, 7)])
def test_the_kernel_cut_at_three_sigma_blurs_as_the_ten_percent_kernel(size, ten_percent):
    """Where the cut shortens the kernel, the largest sigma (the widest blur) differs from
    torchvision's blur with SimCLR's 10%-of-the-crop kernel by less than 1/500 of the range."""
    x = images(n=2, h=size, w=size, seed=4)
    sigma = mc.BLUR_SIGMA[1] * size / 224
    full = torch.stack([TF.gaussian_blur(img, [ten_percent, ten_percent], [sigma]) for img in x])
    cut = mc.gaussian_blur(x, torch.full((2,), sigma), mc.blur_kernel_size(size))
    assert mc.blur_kernel_size(size) < ten_percent and (cut - full).abs().max() < 2e-3


def test_16px_crops_get_no_blur_kernel():
    # 10% of 16 px rounds to a 1 px kernel: an identity, as sigma scaled to 16 px is < 0.15 px.
    x = images(n=2, h=16, w=16)
    assert mc.blur_kernel_size(16) == 1
    assert torch.equal(mc.gaussian_blur(x, torch.tensor([0.1, 0.14]), 1), x)


@pytest.mark.parametrize("hue", [0.1, 0.5])  # DINO's hue jitter, and one that reaches every hue
def test_views_follow_dino_colour_pipeline_with_torchvision_ops(hue):
    """Every view = DINO's order: flip 0.5 → ColorJitter(0.4, 0.4, 0.2, hue) p 0.8 (fixed order
    brightness, contrast, saturation, hue) → grayscale p 0.2 → blur (p 1.0 / 0.1 / 0.5 for
    global 1 / global 2 / local) → solarize (p 0.2, global 2 only) → normalise; here rebuilt
    image by image from torchvision ops and each sample's own uniforms."""
    aug = mc.MultiCropAugmentation(64, (0.4, 1.0), 32, (0.05, 0.4), local_number=2, hue_jitter=hue)
    assert [(p_blur, p_sol) for _, _, p_blur, p_sol in aug.views] == [(1.0, 0.0), (0.1, 0.2), (0.5, 0.0), (0.5, 0.0)]
    seeds = list(range(48))
    batch = torch.randint(0, 256, (48, 3, 96, 96), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    views = aug(batch, seeds)
    draws = mc.per_sample_uniforms(seeds, aug.num_views)
    side = torch.full((48,), 96.0)
    hits = dict.fromkeys(("flip", "jitter", "gray", "blur", "solarize"), 0)
    for v, (size, scale, p_blur, p_solarize) in enumerate(aug.views):
        crops = mc.crop_and_resize(batch, mc.random_resized_crop_boxes(draws[:, v], side, side, scale), size)
        for crop, u, ours in zip(crops, draws[:, v], views[v], strict=True):
            img = crop.clone()
            if u[mc._FLIP] < 0.5:
                img, hits["flip"] = TF.horizontal_flip(img), hits["flip"] + 1
            if u[mc._JITTER] < 0.8:
                img = TF.adjust_brightness(img, 0.6 + 0.8 * float(u[mc._BRIGHT]))
                img = TF.adjust_contrast(img, 0.6 + 0.8 * float(u[mc._CONTRAST]))
                img = TF.adjust_saturation(img, 0.8 + 0.4 * float(u[mc._SAT]))
                img, hits["jitter"] = TF.adjust_hue(img, -hue + 2 * hue * float(u[mc._HUE])), hits["jitter"] + 1
            if u[mc._GRAY] < 0.2:
                img, hits["gray"] = TF.rgb_to_grayscale(img, num_output_channels=3), hits["gray"] + 1
            if u[mc._BLUR] < p_blur:
                sigma = (0.1 + 1.9 * float(u[mc._SIGMA])) * size / 224
                kernel = mc.blur_kernel_size(size)
                img, hits["blur"] = TF.gaussian_blur(img, [kernel, kernel], [sigma]), hits["blur"] + 1
            if u[mc._SOLAR] < p_solarize:
                img, hits["solarize"] = TF.solarize(img, 0.5), hits["solarize"] + 1
            theirs = TF.normalize(img, list(mc.IMAGENET_MEAN), list(mc.IMAGENET_STD))
            assert_matches(ours, theirs, atol=ATOL / min(mc.IMAGENET_STD))
    assert all(hits.values()), hits
