import numpy as np

from dinoflow.data.masking import BlockMaskGenerator, sample_batch_masks


def test_masks_respect_the_budget_and_are_rectangular_unions():
    generator = BlockMaskGenerator((14, 14))
    rng = np.random.default_rng(0)
    for target in (0, 10, 40, 98):
        mask = generator(target, rng)
        assert mask.shape == (14, 14) and mask.sum() <= target
        if target >= 10:
            assert mask.sum() >= 0.5 * target  # blocks fill most of the budget on a 14x14 grid


def test_batch_masks_stratified_share_and_deterministic():
    generator = BlockMaskGenerator((8, 8))
    masks = sample_batch_masks(generator, 20, (0.1, 0.5), 0.5, np.random.default_rng(3))
    again = sample_batch_masks(generator, 20, (0.1, 0.5), 0.5, np.random.default_rng(3))
    assert masks.shape == (20, 64) and masks.dtype == np.bool_ or str(masks.dtype) == "torch.bool"
    assert (masks == again).all()
    masked_images = int((masks.sum(1) > 0).sum())
    assert masked_images == 10
    assert masks.sum(1).max() <= 0.5 * 64
