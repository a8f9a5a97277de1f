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
    columns = {"cls1": slice(0, 16)}
    accuracies = train_linear_probes(features[:160], labels[:160], features[160:], labels[160:], 4, columns,
                                     epochs=20, batch_size=32)  # fmt: skip
    assert len(accuracies) == 13 and max(accuracies.values()) == 1.0
    assert min(accuracies.values()) < 1.0  # the grid matters: a too small lr stays near its random init


def test_probe_feature_variants_have_the_dinov2_widths():
    backbone, dim = build_backbone("vit_tiny_patch16_224", img_size=16, patch_size=4, embed_dim=24, depth=4,
                                   num_heads=2, fused_attn=False)  # fmt: skip
    images = torch.rand(5, 3, 16, 16)
    features = extract_features(backbone, [images[:3], images[3:]])
    assert features.probe_inputs.shape == (5, 5 * dim)  # 4 CLS tokens, then the patch-token average
    widths = {name: tuple(features.variant(name).shape) for name in features.variant_columns}
    assert widths == {
        "cls1": (5, dim),
        "cls1+avgpool": (5, 2 * dim),
        "cls4": (5, 4 * dim),
        "cls4+avgpool": (5, 5 * dim),
    }
    with torch.no_grad():  # cls1 is the model's own output: the final-norm CLS token
        with torch.autocast("cpu", dtype=torch.bfloat16):  # extraction runs under bf16 autocast
            expected = backbone(normalize(images)).float()
        torch.testing.assert_close(features.variant("cls1"), expected)
    assert features.patch_tokens.shape == (5, dim, 4, 4)  # (N, D, h, w) for 16 px / patch 4


def one_optimizer_per_head(train, train_labels, val, val_labels, num_classes, epochs, batch_size, seed=0):
    """The plain reading of DINOv2's grid: an nn.Linear, SGD and cosine schedule per (variant, lr)
    on that variant's own features, drawing the same initial weights and batch orders as the
    batched version."""
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
    wide = torch.cat([torch.randn(300, 12), features, torch.randn(300, 12)], dim=1)
    columns = {"cls1": slice(12, 24), "cls1+avgpool": slice(12, 36), "all": slice(0, 36)}
    train, val = ({name: x[:, c] for name, c in columns.items()} for x in (wide[:200], wide[200:]))
    reference = one_optimizer_per_head(train, labels[:200], val, labels[200:], 5, epochs=6, batch_size=32)
    assert len(set(reference.values())) > 3  # the grid's heads differ, so the comparison is informative
    batched = train_linear_probes(wide[:200], labels[:200], wide[200:], labels[200:], 5, columns, epochs=6,
                                  batch_size=32, matmul_dtype=torch.float32)  # fmt: skip
    assert batched.keys() == reference.keys()
    for head, accuracy in reference.items():  # rounding may flip at most one borderline sample
        assert abs(batched[head] - accuracy) <= 1 / 100 + 1e-6, head
    in_bf16 = train_linear_probes(wide[:200], labels[:200], wide[200:], labels[200:], 5, columns, epochs=6,
                                  batch_size=32)  # fmt: skip
    best = max(reference.values())
    assert abs(max(in_bf16.values()) - best) <= 2 / 100 + 1e-6  # bf16 matmuls: the best head stays as good


def test_closed_form_gradients_are_autograds():
    generator = torch.Generator().manual_seed(2)
    features, labels = torch.randn(5, 6, generator=generator), torch.tensor([0, 3, 1, 1, 2])
    columns = [slice(1, 4), slice(0, 6)]  # two variants: 3 heads on columns 1-3, 2 heads on all 6
    weights = [
        torch.randn(3, 4, 3, generator=generator, requires_grad=True),
        torch.randn(2, 4, 6, generator=generator, requires_grad=True),
    ]  # (H_v, C, F_v)
    bias = torch.randn(5, 1, 4, generator=generator, requires_grad=True)
    per_variant = [torch.einsum("lcd,bd->lbc", w, features[:, c]) for w, c in zip(weights, columns, strict=True)]
    logits = torch.cat(per_variant) + bias  # (H, B, C)
    sum(F.cross_entropy(head_logits, labels) for head_logits in logits).backward()  # each head's mean loss
    grads = [torch.empty(12, 3), torch.empty(8, 6)]
    grad_bias = _cross_entropy_gradients(
        [w.detach().reshape(-1, w.shape[2]) for w in weights], bias.detach().view(20), features, columns,
        F.one_hot(labels, 4).float(), grads,
    )  # fmt: skip
    for grad, weight in zip(grads, weights, strict=True):
        torch.testing.assert_close(grad, weight.grad.reshape(-1, weight.shape[2]))
    torch.testing.assert_close(grad_bias, bias.grad.view(20))
