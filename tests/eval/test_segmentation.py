"""Segmentation probe: mIoU by hand, and a probe that learns what the patch tokens encode."""

import torch

from dinoflow.eval.segmentation import mean_iou, segmentation_miou


def test_mean_iou_by_hand():
    target = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1]])
    predicted = torch.tensor([[0, 1, 1, 1], [0, 0, 1, 2]])
    # class 0: inter 3, union 4; class 1: inter 3, union 5; class 2: inter 0, union 1
    assert abs(mean_iou(predicted, target, 4) - (3 / 4 + 3 / 5 + 0) / 3) < 1e-6
    assert mean_iou(target, target, 4) == 1.0


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
    miou = segmentation_miou(train_tokens, train_masks, val_tokens, val_masks, epochs=30)
    majority = mean_iou(torch.zeros_like(val_masks), val_masks, 3)
    # Bilinear upsampling of patch logits blurs the patch borders, so even perfect patch labels stay
    # below 1; 0.6 is far above what predicting background everywhere scores.
    assert majority < 0.2 and miou > 0.6, (miou, majority)
