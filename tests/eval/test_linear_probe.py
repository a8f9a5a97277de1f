import math

import torch
import torch.nn.functional as F
from torch import nn

from dinoflow.data.multicrop import normalize
from dinoflow.eval.features import extract_features
from dinoflow.eval.linear_probe import LEARNING_RATES, _cross_entropy_gradients, train_linear_probes
from dinoflow.models.backbone import build_backbone


def test_linearly_separable_features_reach_full_accuracy():
    torch.manual_seed(0)
    centres = torch.randn(4, 16) * 5
    labels = torch.arange(4).repeat(50)
    features = centres[labels] + 0.1 * torch.randn(200, 16)
    train, val = {"cls1": features[:160]}, {"cls1": features[160:]}
    accuracies = train_linear_probes(train, labels[:160], val, labels[160:], 4, epochs=20, batch_size=32)
    assert len(accuracies) == 13 and max(accuracies.values()) == 1.0
    assert min(accuracies.values()) < 1.0  # the grid matters: a too small lr stays near its random init


def test_probe_feature_variants_have_the_dinov2_widths():
    backbone, dim = build_backbone("vit_tiny_patch16_224", img_size=16, patch_size=4, embed_dim=24, depth=4,
                                   num_heads=2, fused_attn=False)  # fmt: skip
    images = torch.rand(5, 3, 16, 16)
    features = extract_features(backbone, [images[:3], images[3:]])
    widths = {name: tuple(f.shape) for name, f in features.variants.items()}
    assert widths == {
        "cls1": (5, dim),
        "cls1+avgpool": (5, 2 * dim),
        "cls4": (5, 4 * dim),
        "cls4+avgpool": (5, 5 * dim),
    }
    with torch.no_grad():  # cls1 is the model's own output: the final-norm CLS token
        with torch.autocast("cpu", dtype=torch.bfloat16):  # extraction runs under bf16 autocast
            expected = backbone(normalize(images)).float()
        torch.testing.assert_close(features.variants["cls1"], expected)
    assert features.patch_tokens.shape == (5, dim, 4, 4)  # (N, D, h, w) for 16 px / patch 4


def one_optimizer_per_head(train, train_labels, val, val_labels, num_classes, epochs, batch_size, seed=0):
    """The plain reading of DINOv2's grid: an nn.Linear, SGD and cosine schedule per (variant, lr),
    drawing the same initial weights and batch orders as the batched version."""
    generator = torch.Generator().manual_seed(seed)
    heads = {}
    for variant, features in train.items():
        weights = torch.randn(len(LEARNING_RATES), num_classes, features.shape[1], generator=generator) * 0.01
        for lr, weight in zip(LEARNING_RATES, weights, strict=True):
            head = nn.Linear(features.shape[1], num_classes)
            head.weight.data.copy_(weight)
            nn.init.zeros_(head.bias)
            optimizer = torch.optim.SGD(head.parameters(), lr=lr * batch_size / 256, momentum=0.9)
            total = epochs * math.ceil(len(train_labels) / batch_size)
            heads[(variant, lr)] = (head, optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, total))
    for _ in range(epochs):
        order = torch.randperm(len(train_labels), generator=generator)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            for (variant, _), (head, optimizer, scheduler) in heads.items():
                F.cross_entropy(head(train[variant][idx]), train_labels[idx]).backward()
                optimizer.step()
                optimizer.zero_grad()
                scheduler.step()
    with torch.no_grad():
        return {
            f"{variant}@{lr:g}": float((head(val[variant]).argmax(1) == val_labels).float().mean())
            for (variant, lr), (head, _, _) in heads.items()
        }


def test_batched_heads_train_as_one_optimizer_per_head():
    torch.manual_seed(1)
    centres = torch.randn(5, 12) * 1.5  # overlapping classes: accuracies spread between chance and 1
    labels = torch.arange(5).repeat(60)
    features = centres[labels] + torch.randn(300, 12)
    wide = torch.cat([features, torch.randn(300, 12)], dim=1)
    train = {"cls1": features[:200], "cls1+avgpool": wide[:200]}
    val = {"cls1": features[200:], "cls1+avgpool": wide[200:]}
    batched = train_linear_probes(train, labels[:200], val, labels[200:], 5, epochs=6, batch_size=32)
    reference = one_optimizer_per_head(train, labels[:200], val, labels[200:], 5, epochs=6, batch_size=32)
    assert batched.keys() == reference.keys()
    assert len(set(reference.values())) > 3  # the grid's heads differ, so the comparison is informative
    for head, accuracy in reference.items():  # rounding may flip at most one borderline sample
        assert abs(batched[head] - accuracy) <= 1 / 100 + 1e-6, head


def test_closed_form_gradients_are_autograds():
    generator = torch.Generator().manual_seed(2)
    weight = torch.randn(3, 4, 6, generator=generator, requires_grad=True)  # (L, C, D)
    bias = torch.randn(3, 1, 4, generator=generator, requires_grad=True)
    features, labels = torch.randn(5, 6, generator=generator), torch.tensor([0, 3, 1, 1, 2])
    logits = torch.einsum("lcd,bd->lbc", weight, features) + bias  # (L, B, C)
    sum(F.cross_entropy(head_logits, labels) for head_logits in logits).backward()  # each head's mean loss
    grad_weight, grad_bias = _cross_entropy_gradients(
        weight.detach(), bias.detach(), features, F.one_hot(labels, 4).float()
    )
    torch.testing.assert_close(grad_weight, weight.grad)
    torch.testing.assert_close(grad_bias, bias.grad)
