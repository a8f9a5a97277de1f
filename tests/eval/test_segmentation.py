"""Segmentation probe: mIoU by hand, its input by hand, and a probe that learns what the tokens encode."""

import torch

from dinoflow.eval.segmentation import mean_iou, probe_input, segmentation_miou


def test_mean_iou_by_hand():
    target = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1]])
    predicted = torch.tensor([[0, 1, 1, 1], [0, 0, 1, 2]])
    # class 0: inter 3, union 4; class 1: inter 3, union 5; class 2: inter 0, union 1
    assert abs(mean_iou(predicted, target, 4) - (3 / 4 + 3 / 5 + 0) / 3) < 1e-6
    assert mean_iou(target, target, 4) == 1.0


def test_probe_input_appends_the_image_tokens_to_every_patch_token():
    patches = torch.arange(2 * 3 * 2 * 2, dtype=torch.bfloat16).reshape(2, 3, 2, 2)
    image = torch.tensor([[10.0, 11.0], [20.0, 21.0]])
    joined = probe_input(patches, image)
    assert joined.shape == (2, 5, 2, 2) and joined.dtype == torch.float32
    assert torch.equal(joined[:, :3], patches.float())
    for b, row, col in [(0, 0, 0), (0, 1, 1), (1, 0, 1)]:
        assert joined[b, 3:, row, col].tolist() == image[b].tolist()


def synthetic_tokens(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Patch tokens (N, 8, 4, 4) whose first channels encode a per-patch class; masks at 16 px."""
    patch_classes = torch.randint(0, 3, (n, 4, 4), generator=generator)
    patch_classes[:, 1:3, 1:3] = torch.randint(1, 3, (n, 1, 1), generator=generator)  # an object in the middle
    patch_classes[:, 0] = 0  # background at the top
    tokens = torch.randn(n, 8, 4, 4, generator=generator) * 0.5
    tokens[:, :3] += 3 * torch.nn.functional.one_hot(patch_classes, 3).permute(0, 3, 1, 2)
    masks = patch_classes.repeat_interleave(4, 1).repeat_interleave(4, 2)
    return tokens, masks


def test_probe_beats_the_majority_class_on_synthetic_masks():
    generator = torch.Generator().manual_seed(0)
    train_tokens, train_masks = synthetic_tokens(200, generator)
    val_tokens, val_masks = synthetic_tokens(50, generator)
    no_image_tokens = torch.zeros(200, 0), torch.zeros(50, 0)
    miou = segmentation_miou(
        (train_tokens, no_image_tokens[0]), train_masks, (val_tokens, no_image_tokens[1]), val_masks, epochs=30
    )
    majority = mean_iou(torch.zeros_like(val_masks), val_masks, 3)
    # Bilinear upsampling of patch logits blurs the patch borders, so even perfect patch labels stay
    # below 1; 0.6 is far above what predicting background everywhere scores.
    assert majority < 0.2 and miou > 0.6, (miou, majority)


def where_and_what(n: int, generator: torch.Generator) -> tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Patch tokens (N, 4, 4, 4) that say only where the object is (channel 0), CLS tokens (N, 4)
    that say only which of classes 1-3 it is; masks (N, 16, 16): background 0, the object its class."""
    classes = torch.randint(1, 4, (n,), generator=generator)
    inside = torch.zeros(n, 4, 4, dtype=torch.bool)
    for i, (row, col) in enumerate(torch.randint(0, 3, (n, 2), generator=generator).tolist()):
        inside[i, row : row + 2, col : col + 2] = True  # a 2 x 2-patch object anywhere
    patches = torch.randn(n, 4, 4, 4, generator=generator) * 0.3
    patches[:, 0] += 3 * inside
    image = torch.randn(n, 4, generator=generator) * 0.3 + 3 * torch.nn.functional.one_hot(classes, 4)
    masks = (inside * classes[:, None, None]).repeat_interleave(4, 1).repeat_interleave(4, 2)
    return (patches, image), masks


def test_the_cls_token_tells_the_probe_which_class_the_patches_show():
    generator = torch.Generator().manual_seed(0)
    train, train_masks = where_and_what(300, generator)
    val, val_masks = where_and_what(100, generator)
    with_cls = segmentation_miou(train, train_masks, val, val_masks, epochs=30)
    patches_only = segmentation_miou(
        (train[0], train[1][:, :0]), train_masks, (val[0], val[1][:, :0]), val_masks, epochs=30
    )
    # Without the CLS token the probe can only guess one class for every object: at best background
    # plus a third of the objects; with it, every class.
    assert with_cls > 0.7 and patches_only < 0.45, (with_cls, patches_only)
