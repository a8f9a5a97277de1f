import torch

from dinoflow.data.loader import pad_batch
from dinoflow.data.multicrop import MultiCropAugmentation, per_sample_uniforms, random_resized_crop_boxes, rotate


def make_aug(local_number=3):
    return MultiCropAugmentation(16, (0.4, 1.0), 8, (0.05, 0.4), local_number)


def test_views_shapes_and_dtype():
    images = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    views = make_aug()(images, [0, 1, 2, 3, 4])
    assert len(views) == 5
    assert all(v.shape == (5, 3, 16, 16) for v in views[:2])
    assert all(v.shape == (5, 3, 8, 8) for v in views[2:])
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in views)


def test_views_of_a_sample_depend_only_on_its_seed():
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    first = make_aug()(images, [7, 8, 9, 10])
    again = make_aug()(images, [7, 8, 9, 10])
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    # Sample 2 alone, or in another batch position with other neighbours: the same views.
    alone = make_aug()(images[2:3], [9])
    moved = make_aug()(torch.stack([images[0], images[2]]), [99, 9])
    for view, single, pair in zip(first, alone, moved, strict=True):
        torch.testing.assert_close(view[2:3], single)
        torch.testing.assert_close(view[2:3], pair[1:2])
    other = make_aug()(images, [7, 8, 90, 10])
    assert not torch.equal(first[0][2], other[0][2])


def test_crop_boxes_respect_scale_and_bounds():
    boxes = random_resized_crop_boxes(
        torch.rand(1000, 14, generator=torch.Generator().manual_seed(0)),
        torch.full((1000,), 40.0),
        torch.full((1000,), 60.0),
        (0.1, 0.3),
    )
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= 60 + 1e-4).all() and (boxes[:, 3] <= 40 + 1e-4).all()
    area = w * h / (40 * 60)
    assert area.min() >= 0.1 - 1e-3 and area.max() <= 0.3 + 1e-3
    ratio = w / h
    assert ratio.min() >= 3 / 4 - 1e-3 and ratio.max() <= 4 / 3 + 1e-3


def test_constant_image_stays_constant_through_crop_and_blur():
    # A flat grey image has no structure to move: every view must be flat too.
    images = torch.full((3, 3, 32, 32), 128, dtype=torch.uint8)
    aug = MultiCropAugmentation(16, (0.4, 1.0), 8, (0.05, 0.4), 2, jitter_strength=0.0)
    for view in aug(images, [0, 1, 2]):
        assert torch.allclose(view, view[..., :1, :1].expand_as(view), atol=1e-4)


def test_a_padded_image_gets_the_views_it_gets_alone():
    # Padding to the batch's largest image must not leak into the crops of a smaller one.
    small = torch.randint(0, 256, (3, 20, 28), dtype=torch.uint8)
    large = torch.randint(0, 256, (3, 32, 24), dtype=torch.uint8)
    batch, sizes = pad_batch([small, large])
    assert batch.shape == (2, 3, 32, 28) and sizes.tolist() == [[20, 28], [32, 24]]
    padded = make_aug()(batch, [5, 6], sizes)
    alone = make_aug()(small[None], [5])
    for view, single in zip(padded, alone, strict=True):
        torch.testing.assert_close(view[:1], single, atol=1e-5, rtol=0)


def test_grayscale_prob_sets_the_share_of_grey_views():
    from dinoflow.data.multicrop import IMAGENET_MEAN, IMAGENET_STD

    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)

    def grey_share(prob: float) -> float:
        aug = MultiCropAugmentation(16, (0.5, 1.0), 8, (0.2, 0.5), 2, jitter_strength=0.0, grayscale_prob=prob)
        views = [v * std + mean for v in aug(images, list(range(64)))]
        grey = [((v - v.mean(1, keepdim=True)).abs().amax(dim=(1, 2, 3)) < 1e-5) for v in views]
        return torch.cat(grey).float().mean().item()

    assert grey_share(1.0) == 1.0 and grey_share(0.0) == 0.0
    assert 0.35 < grey_share(0.5) < 0.65  # 256 draws


def test_rotate_turns_counter_clockwise_about_the_centre():
    image = torch.zeros(1, 3, 9, 9)
    image[0, :, 4, 6:] = 1.0  # a bar right of the centre pixel
    quarter = rotate(image, torch.tensor([90.0]))
    assert (quarter[0, 0] > 0.5).nonzero().tolist() == [[0, 4], [1, 4], [2, 4]]  # now above it
    half = rotate(image, torch.tensor([180.0]))
    assert (half[0, 0] > 0.5).nonzero().tolist() == [[4, 0], [4, 1], [4, 2]]  # now left of it
    torch.testing.assert_close(rotate(image, torch.tensor([0.0])), image)


def test_rotation_draw_leaves_every_other_draw_as_it_was():
    """Runs without rotation keep the views they had before the rotation draw existed."""
    draws = per_sample_uniforms([7, 8], num_views=3)
    for row, seed in zip(draws, (7, 8), strict=True):
        torch.testing.assert_close(row[:, :14], torch.rand(3, 14, generator=torch.Generator().manual_seed(seed)))


def test_rotated_views_depend_only_on_the_seed_and_differ_from_upright_ones():
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    aug = MultiCropAugmentation(16, (0.4, 1.0), 8, (0.05, 0.4), 2, rotation_degrees=180)
    batch, alone = aug(images, [4, 5, 6]), aug(images[1:2], [5])
    for view, single in zip(batch, alone, strict=True):
        torch.testing.assert_close(view[1:2], single)
    upright = make_aug(local_number=2)(images, [4, 5, 6])
    assert all(not torch.allclose(a, b) for a, b in zip(batch, upright, strict=True))


def test_batched_gpu_crop_path_matches_the_per_image_path():
    """The one-kernel roi_align path (used on GPUs) and the per-image antialiased resize (CPU)
    make the same crops, up to interpolation detail (checked here on CPU, where both run)."""
    from dinoflow.data.multicrop import _crop_and_resize_batched, _crop_and_resize_per_image, per_sample_uniforms

    torch.manual_seed(0)
    smooth = torch.nn.functional.interpolate(torch.rand(16, 3, 8, 8), size=(64, 64), mode="bicubic")
    images = (smooth.clamp(0, 1) * 255).round().to(torch.uint8)
    draws = per_sample_uniforms(range(16), 1)[:, 0]
    side = torch.full((16,), 64.0)
    for scale, size in (((0.4, 1.0), 32), ((0.05, 0.1), 32), ((0.05, 0.4), 16)):  # down- and upscaling
        boxes = random_resized_crop_boxes(draws, side, side, scale).round()
        per_image, batched = (
            _crop_and_resize_per_image(images, boxes, size),
            _crop_and_resize_batched(images, boxes, size),
        )
        assert batched.shape == per_image.shape == (16, 3, size, size)
        assert (batched - per_image).abs().mean() < 0.01 and (batched - per_image).abs().max() < 0.08
