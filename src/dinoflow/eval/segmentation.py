"""Linear semantic segmentation on frozen tokens, as DINOv2's linear heads.

Each patch token of the last n blocks, concatenated with its image's CLS token of the same blocks
(the 1x1 "image descriptor" DINOv2's linear heads accept beside the patch grid, as its linear
depth probe uses it), goes through a BatchNorm + 1x1 convolution to class logits; the logits are
bilinearly upsampled to the mask resolution and trained with cross-entropy; the score is the mean
intersection-over-union over classes. The CLS token says what the image shows, the patch tokens
where: the probe needs both to label every pixel with an object's class.

- [0]: Oquab et al., DINOv2, 2023, https://arxiv.org/abs/2304.07193 (§7.3-7.4, App. B.4 "lin.")
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SEGMENTATION_BLOCKS = 4  # the last blocks whose tokens the probe reads, as DINOv2's four-block linear heads


def probe_input(patch_tokens: torch.Tensor, image_tokens: torch.Tensor) -> torch.Tensor:
    """(B, P, h, w) patch tokens and (B, G) CLS tokens → (B, P + G, h, w) float: every patch token
    with its image's CLS tokens appended."""
    grid = image_tokens.float()[:, :, None, None].expand(-1, -1, *patch_tokens.shape[-2:])
    return torch.cat([patch_tokens.float(), grid], dim=1)


class LinearSegmentationHead(nn.Module):
    """(B, D, h, w) probe input → (B, C, h, w) logits: BN + 1x1 conv."""

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(dim)
        self.conv = nn.Conv2d(dim, num_classes, kernel_size=1)
        nn.init.normal_(self.conv.weight, std=0.01)
        nn.init.zeros_(self.conv.bias)

    def forward(self, tokens: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Returns (B, C, *size) upsampled logits."""
        return F.interpolate(self.conv(self.bn(tokens)), size=size, mode="bilinear", align_corners=False)


def train_segmentation_probe(
    patch_tokens: torch.Tensor,
    image_tokens: torch.Tensor,
    masks: torch.Tensor,
    num_classes: int,
    epochs: int = 20,
    lr: float = 1e-2,
    batch_size: int = 64,
    seed: int = 0,
) -> LinearSegmentationHead:
    """Fit the head on frozen tokens (AdamW, cosine schedule).

    Args:
        patch_tokens: (N, P, h, w); image_tokens: (N, G) CLS tokens (G may be 0: patch tokens only);
        masks: (N, S, S) int64 class ids in [0, C).
    """
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    head = LinearSegmentationHead(patch_tokens.shape[1] + image_tokens.shape[1], num_classes)
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * -(-len(patch_tokens) // batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    head.train()
    for _ in range(epochs):
        order = torch.randperm(len(patch_tokens), generator=generator)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            if len(idx) < 2:  # BatchNorm needs more than one sample
                continue
            logits = head(probe_input(patch_tokens[idx], image_tokens[idx]), masks.shape[-2:])
            loss = F.cross_entropy(logits, masks[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
    return head.eval()


@torch.no_grad()
def predict_masks(
    head: LinearSegmentationHead,
    patch_tokens: torch.Tensor,
    image_tokens: torch.Tensor,
    size: tuple[int, int],
    batch_size: int = 256,
) -> torch.Tensor:
    """(N, P, h, w) and (N, G) → (N, *size) int64 predicted class ids."""
    batches = range(0, len(patch_tokens), batch_size)
    return torch.cat(
        [head(probe_input(patch_tokens[s : s + batch_size], image_tokens[s : s + batch_size]), size).argmax(1)
         for s in batches]
    )  # fmt: skip


def mean_iou(predicted: torch.Tensor, target: torch.Tensor, num_classes: int) -> float:
    """Mean over classes of |pred ∩ target| / |pred ∪ target|, counted over the whole split
    (classes absent from both are skipped), as in mmsegmentation's mIoU."""
    pred, true = predicted.flatten(), target.flatten()
    intersection = torch.bincount(true[pred == true], minlength=num_classes).float()
    union = (
        torch.bincount(pred, minlength=num_classes).float() + torch.bincount(true, minlength=num_classes) - intersection
    )
    present = union > 0
    return float((intersection[present] / union[present]).mean())


def segmentation_miou(
    train: tuple[torch.Tensor, torch.Tensor],
    train_masks: torch.Tensor,
    val: tuple[torch.Tensor, torch.Tensor],
    val_masks: torch.Tensor,
    epochs: int = 20,
    lr: float = 1e-2,
) -> float:
    """Train on the train split's masks, return mIoU on the val split's.

    Args:
        train, val: (patch tokens (N, P, h, w), CLS tokens (N, G)) of each split.
    """
    num_classes = int(max(train_masks.max(), val_masks.max())) + 1
    head = train_segmentation_probe(*train, train_masks, num_classes, epochs, lr)
    return mean_iou(predict_masks(head, *val, tuple(val_masks.shape[-2:])), val_masks, num_classes)
