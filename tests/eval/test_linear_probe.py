import torch

from dinoflow.data.multicrop import normalize
from dinoflow.eval.features import extract_features
from dinoflow.eval.linear_probe import train_linear_probes
from dinoflow.models.backbone import build_backbone


def test_linearly_separable_features_reach_full_accuracy():
    torch.manual_seed(0)
    centres = torch.randn(4, 16) * 5
    labels = torch.arange(4).repeat(50)
    features = centres[labels] + 0.1 * torch.randn(200, 16)
    train, val = {"cls1": features[:160]}, {"cls1": features[160:]}
    accuracies = train_linear_probes(train, labels[:160], val, labels[160:], 4, epochs=20, batch_size=32)
    assert len(accuracies) == 13 and max(accuracies.values()) == 1.0
    assert accuracies["cls1@1e-05"] < 1.0  # the grid matters: too small an lr does not get there


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
