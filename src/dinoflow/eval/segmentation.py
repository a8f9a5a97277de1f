"""Linear semantic segmentation on frozen patch tokens, as DINOv2's "linear" segmentation probe.

A BatchNorm + 1x1 convolution maps each patch token of the last block to class logits; the
logits are bilinearly upsampled to the mask resolution and trained with cross-entropy; the score
is the mean intersection-over-union over classes.

- [0]: Oquab et al., DINOv2, 2023, https://arxiv.org/abs/2304.07193 (§7.3, App. B.4 "lin.")
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LinearSegmentationHead(nn.Module):
    """(B, D, h, w) patch tokens → (B, C, h, w) logits: BN + 1x1 conv."""

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
    tokens: torch.Tensor,
    masks: torch.Tensor,
    num_classes: int,
    epochs: int = 20,
    lr: float = 1e-3,
    batch_size: int = 64,
    seed: int = 0,
) -> LinearSegmentationHead:
    """Fit the head on frozen tokens (AdamW, cosine schedule).

    Args:
        tokens: (N, D, h, w) patch tokens; masks: (N, S, S) int64 class ids in [0, C).
    """
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    head = LinearSegmentationHead(tokens.shape[1], num_classes)
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * -(-len(tokens) // batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    head.train()
    for _ in range(epochs):
        order = torch.randperm(len(tokens), generator=generator)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            if len(idx) < 2:  # BatchNorm needs more than one sample
                continue
            loss = F.cross_entropy(head(tokens[idx].float(), masks.shape[-2:]), masks[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
    return head.eval()


@torch.no_grad()
def predict_masks(head: LinearSegmentationHead, tokens: torch.Tensor, size: tuple[int, int], batch_size: int = 256):
    """(N, D, h, w) → (N, *size) int64 predicted class ids."""
    return torch.cat(
        [head(tokens[s : s + batch_size].float(), size).argmax(1) for s in range(0, len(tokens), batch_size)]
    )


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
    train_tokens: torch.Tensor,
    train_masks: torch.Tensor,
    val_tokens: torch.Tensor,
    val_masks: torch.Tensor,
    epochs: int = 20,
) -> float:
    """Train on the train split's masks, return mIoU on the val split's."""
    num_classes = int(max(train_masks.max(), val_masks.max())) + 1
    head = train_segmentation_probe(train_tokens, train_masks, num_classes, epochs)
    return mean_iou(predict_masks(head, val_tokens, tuple(val_masks.shape[-2:])), val_masks, num_classes)
