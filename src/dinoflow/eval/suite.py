"""The evaluation of a pretraining run, with the baselines that show what it bought.

The trained teacher backbone is scored with DINO's weighted k-NN (val split queries the train
split) for several k, with DINOv2's grid of linear probes and, where the splits have masks, with
DINOv2's linear segmentation probe on patch tokens; the same architecture at its random
initialisation (the run's starting point) and standardised raw pixels are scored with the same
k-NN and the same probes, so every figure has its baseline next to it.
"""

from __future__ import annotations

import torch
from torch import nn

from dinoflow.data.shards import ShardReader
from dinoflow.eval.features import (
    Features,
    evaluation_batches,
    evaluation_masks,
    extract_features,
    raw_pixel_features,
)
from dinoflow.eval.knn import knn_classify_multi_k, top_k_accuracy
from dinoflow.eval.linear_probe import train_linear_probes
from dinoflow.eval.segmentation import segmentation_miou


def knn_metrics(train_features, train_labels, val_features, val_labels, num_classes, ks, k, temperature) -> dict:
    """``top1_k<k>`` for every k, plus ``top1`` / ``top5`` at the headline k."""
    scores = knn_classify_multi_k(
        train_features, train_labels, val_features, num_classes, tuple(sorted({*ks, k})), temperature
    )
    metrics = {f"top1_k{kk}": top_k_accuracy(scores[kk], val_labels, 1) for kk in ks}
    return {
        **metrics,
        "top1": top_k_accuracy(scores[k], val_labels, 1),
        "top5": top_k_accuracy(scores[k], val_labels, 5),
    }


def evaluate_backbone(
    trained: nn.Module,
    random_init: nn.Module,
    train_images: ShardReader,
    val_images: ShardReader,
    num_classes: int,
    image_size: int,
    k: int = 20,
    ks: tuple[int, ...] = (10, 20, 100, 200),
    temperature: float = 0.07,
    linear_epochs: int = 30,
    segmentation_epochs: int = 20,
    batch_size: int = 256,
    with_masks: bool = False,
) -> tuple[dict[str, float], dict[str, str]]:
    """Returns (metrics, details): metrics are flat floats in [0, 1] (``knn_top1``, ``knn_top5``,
    ``knn_top1_k<k>``, ``knn_top1_random_init``, ``knn_top1_raw_pixels``, ``linear_top1``,
    ``linear_top1_random_init``, with masks ``seg_miou``, ``seg_miou_random_init``, counts);
    details name the best linear head of each network."""
    readers, labels = (train_images, val_images), (train_images.labels(), val_images.labels())
    masks = tuple(evaluation_masks(r, image_size) for r in readers) if with_masks else None

    def knn(train_features: torch.Tensor, val_features: torch.Tensor) -> dict[str, float]:
        return knn_metrics(train_features, labels[0], val_features, labels[1], num_classes, ks, k, temperature)

    def features(model: nn.Module, name: str) -> list[Features]:
        return [
            extract_features(
                model, evaluation_batches(r, image_size, batch_size), -(-len(r) // batch_size), f"{name} {split}"
            )
            for r, split in zip(readers, ("train", "val"), strict=True)
        ]

    def scores(model: nn.Module, name: str) -> dict:
        # One feature pass per split serves every protocol: k-NN uses the final CLS token ("cls1").
        train, val = features(model, name)
        accuracies = train_linear_probes(
            train.variants, labels[0], val.variants, labels[1], num_classes, linear_epochs, batch_size
        )
        best = max(accuracies, key=accuracies.get)
        result = {"knn": knn(train.variants["cls1"], val.variants["cls1"]), "linear": accuracies[best], "head": best}
        if masks is not None:
            result["seg"] = segmentation_miou(
                train.patch_tokens, masks[0], val.patch_tokens, masks[1], segmentation_epochs
            )
        return result

    ours, random = scores(trained, "trained"), scores(random_init, "random init")
    raw_knn = knn(*(raw_pixel_features(evaluation_batches(r, image_size, batch_size)) for r in readers))
    metrics = {
        "knn_top1": ours["knn"]["top1"],
        "knn_top5": ours["knn"]["top5"],
        **{f"knn_{name}": value for name, value in ours["knn"].items() if name.startswith("top1_k")},
        "knn_top1_random_init": random["knn"]["top1"],
        "knn_top1_raw_pixels": raw_knn["top1"],
        "linear_top1": ours["linear"],
        "linear_top1_random_init": random["linear"],
        **({"seg_miou": ours["seg"], "seg_miou_random_init": random["seg"]} if masks is not None else {}),
        "knn_k": float(k),
        "eval_train_images": float(len(labels[0])),
        "eval_val_images": float(len(labels[1])),
    }
    return metrics, {"linear_best_head": ours["head"], "linear_best_head_random_init": random["head"]}
