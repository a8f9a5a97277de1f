"""The evaluation of a pretraining run, with the baselines that show what it bought.

The trained teacher backbone is scored with DINO's weighted k-NN (val split queries the train
split) for several k, with DINOv2's grid of linear probes and, where the splits have masks, with
a DINOv2 linear segmentation probe (patch and CLS tokens of the last four blocks); the same
architecture at its random initialisation (the run's starting point) and standardised raw pixels
are scored with the same k-NN and the same probes, so every figure has its baseline next to it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from dinoflow.data.shards import ShardReader
from dinoflow.eval.features import evaluation_masks, evaluation_views, extract_features, view_batches
from dinoflow.eval.knn import centred_byte_cosine_blocks, cosine_blocks, knn_votes, top_k_accuracy
from dinoflow.eval.linear_probe import train_linear_probes
from dinoflow.eval.segmentation import SEGMENTATION_BLOCKS, mean_iou, segmentation_miou


@dataclass(frozen=True)
class EvalSettings:
    """The evaluation protocol (defaults: DINO's k-NN, DINOv2's probes)."""

    image_size: int
    k: int = 20
    ks: tuple[int, ...] = (10, 20, 100, 200)
    temperature: float = 0.07
    linear_epochs: int = 30
    segmentation_epochs: int = 20
    segmentation_lr: float = 1e-2
    batch_size: int = 256


class EvalSet:
    """The train/val splits an evaluation scores on: their evaluation views (decoded once, for every
    backbone and baseline), labels, and masks when both splits have them."""

    def __init__(self, train: ShardReader, val: ShardReader, num_classes: int, image_size: int, with_masks: bool):
        readers = (train, val)
        self.views = tuple(evaluation_views(r, image_size) for r in readers)
        self.labels = (train.labels(), val.labels())
        self.num_classes = num_classes
        self.masks = tuple(evaluation_masks(r, image_size) for r in readers) if with_masks else None

    def batches(self, split: int, settings: EvalSettings):
        return view_batches(self.views[split], settings.batch_size)


def score_backbone(
    model: nn.Module, data: EvalSet, settings: EvalSettings, name: str = "backbone", linear: bool = True
) -> dict:
    """k-NN, best linear probe (unless ``linear`` is False) and, with masks, segmentation mIoU of
    one frozen backbone.

    Returns:
        ``{"knn": {"top1", "top5", "top1_k<k>"...}, ["linear": float, "linear_head": str], ["seg": float]}``.
    """
    # One feature pass per split serves every protocol: k-NN uses the final CLS token ("cls1").
    patch_blocks = SEGMENTATION_BLOCKS if data.masks is not None else 0  # only the segmentation probe reads them
    train, val = (
        extract_features(
            model, data.batches(i, settings), -(-len(v) // settings.batch_size), f"{name} {split}", patch_blocks
        )
        for i, (v, split) in enumerate(zip(data.views, ("train", "val"), strict=True))
    )
    result = {"knn": _knn(cosine_blocks(train.variant("cls1"), val.variant("cls1")), data, settings)}
    if linear:
        accuracies = train_linear_probes(
            train.probe_inputs, data.labels[0], val.probe_inputs, data.labels[1], data.num_classes,
            train.variant_columns, settings.linear_epochs, settings.batch_size,
        )  # fmt: skip
        result["linear_head"] = max(accuracies, key=accuracies.get)
        result["linear"] = accuracies[result["linear_head"]]
    if data.masks is not None:
        result["seg"] = segmentation_miou(
            train.segmentation_inputs(), data.masks[0], val.segmentation_inputs(), data.masks[1],
            settings.segmentation_epochs, settings.segmentation_lr,
        )  # fmt: skip
    return result


def _knn(similarity_blocks, data: EvalSet, settings: EvalSettings) -> dict:
    """``top1_k<k>`` for every k, plus ``top1`` / ``top5`` at the headline k, from the (m, N_train)
    similarity blocks of consecutive val samples (``knn.cosine_blocks``)."""
    ks = tuple(sorted({*settings.ks, settings.k}))
    scores = knn_votes(similarity_blocks, data.labels[0], data.num_classes, ks, settings.temperature)
    val_labels = data.labels[1]
    return {
        **{f"top1_k{k}": top_k_accuracy(scores[k], val_labels, 1) for k in settings.ks},
        "top1": top_k_accuracy(scores[settings.k], val_labels, 1),
        "top5": top_k_accuracy(scores[settings.k], val_labels, 5),
    }


def raw_pixel_knn(data: EvalSet, settings: EvalSettings) -> dict:
    """The baseline: k-NN on each image's pixels standardised per image (a fairer pixel baseline
    than raw), i.e. by the cosine of the mean-centred pixels. Byte views use the exact int8 path."""
    train, val = (v.flatten(1) for v in data.views)
    if train.dtype == val.dtype == torch.uint8:
        return _knn(centred_byte_cosine_blocks(train, val), data, settings)
    floats = (x.float() for x in (train, val))  # bytes or [0, 1]: a cosine ignores the scale
    return _knn(cosine_blocks(*(x - x.mean(1, keepdim=True) for x in floats)), data, settings)


def _segmentation_metrics(ours: dict, random: dict, data: EvalSet) -> dict[str, float]:
    """Both probes, and what predicting the train split's most frequent class everywhere scores."""
    train_masks, val_masks = data.masks
    classes = int(max(train_masks.max(), val_masks.max())) + 1
    majority = torch.full_like(val_masks, int(torch.bincount(train_masks.flatten()).argmax()))
    return {
        "seg_miou": ours["seg"],
        "seg_miou_random_init": random["seg"],
        "seg_miou_majority": mean_iou(majority, val_masks, classes),
    }


def evaluate_backbone(
    trained: nn.Module, random_init: nn.Module, data: EvalSet, settings: EvalSettings
) -> tuple[dict[str, float], dict[str, str]]:
    """The trained backbone next to its baselines (random init, raw pixels).

    Returns (metrics, details): metrics are flat floats in [0, 1] (``knn_top1``, ``knn_top5``,
    ``knn_top1_k<k>``, ``knn_top1_random_init``, ``knn_top1_raw_pixels``, ``linear_top1``,
    ``linear_top1_random_init``, with masks ``seg_miou``, ``seg_miou_random_init``,
    ``seg_miou_majority``, counts);
    details name the best linear head of each network.
    """
    ours, random = (
        score_backbone(trained, data, settings, "trained"),
        score_backbone(random_init, data, settings, "random init"),
    )
    raw_knn = raw_pixel_knn(data, settings)
    metrics = {
        "knn_top1": ours["knn"]["top1"],
        "knn_top5": ours["knn"]["top5"],
        **{f"knn_{name}": value for name, value in ours["knn"].items() if name.startswith("top1_k")},
        "knn_top1_random_init": random["knn"]["top1"],
        "knn_top1_raw_pixels": raw_knn["top1"],
        "linear_top1": ours["linear"],
        "linear_top1_random_init": random["linear"],
        **(_segmentation_metrics(ours, random, data) if data.masks is not None else {}),
        "knn_k": float(settings.k),
        "eval_train_images": float(len(data.labels[0])),
        "eval_val_images": float(len(data.labels[1])),
    }
    return metrics, {"linear_best_head": ours["linear_head"], "linear_best_head_random_init": random["linear_head"]}
