"""The k-NN evaluation of a pretraining run, with the baselines that show what it bought.

Three feature sets on the same images, scored with DINO's weighted k-NN (val split queries the
train split): the trained teacher backbone, the same architecture at its random initialisation
(the run's starting point), and standardised raw pixels.
"""

from __future__ import annotations

import torch
from torch import nn

from dinoflow.eval.features import extract_features, raw_pixel_features
from dinoflow.eval.knn import knn_classify, top_k_accuracy


def knn_scores(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    val_features: torch.Tensor,
    val_labels: torch.Tensor,
    num_classes: int,
    k: int,
    temperature: float,
) -> dict[str, float]:
    scores = knn_classify(train_features, train_labels, val_features, num_classes, k, temperature)
    return {
        "top1": top_k_accuracy(scores, val_labels, 1),
        "top5": top_k_accuracy(scores, val_labels, 5),
    }


def evaluate_knn(
    trained: nn.Module,
    random_init: nn.Module,
    train_shard: dict[str, torch.Tensor],
    val_shard: dict[str, torch.Tensor],
    num_classes: int,
    image_size: int,
    k: int = 20,
    temperature: float = 0.07,
    batch_size: int = 256,
    device: str = "cpu",
) -> dict[str, float]:
    """Returns ``knn_top1``, ``knn_top5``, ``knn_top1_random_init``, ``knn_top1_raw_pixels``, all in [0, 1]."""
    labels = train_shard["labels"], val_shard["labels"]

    def score(extract) -> dict[str, float]:
        return knn_scores(
            extract(train_shard["images"]),
            labels[0],
            extract(val_shard["images"]),
            labels[1],
            num_classes,
            k,
            temperature,
        )

    def backbone_features(model: nn.Module):
        return lambda images: extract_features(model, images, image_size, batch_size, device)

    trained_scores = score(backbone_features(trained))
    return {
        "knn_top1": trained_scores["top1"],
        "knn_top5": trained_scores["top5"],
        "knn_top1_random_init": score(backbone_features(random_init))["top1"],
        "knn_top1_raw_pixels": score(lambda images: raw_pixel_features(images, image_size))["top1"],
        "knn_k": float(k),
        "eval_train_images": float(len(labels[0])),
        "eval_val_images": float(len(labels[1])),
    }
