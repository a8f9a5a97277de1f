"""Attention maps equal timm's own attention weights; PCA pictures are well-formed."""

import pytest
import torch

from dinoflow.data.multicrop import normalize
from dinoflow.eval.pictures import cls_attention_maps, pca_rgb, plot_training_curve, render_pictures
from dinoflow.models.backbone import build_backbone


def tiny_backbone(fused_attn: bool, reg_tokens: int = 0):
    backbone, _ = build_backbone("vit_tiny_patch16_224", img_size=16, patch_size=4, embed_dim=24, depth=2,
                                 num_heads=3, fused_attn=fused_attn, reg_tokens=reg_tokens)  # fmt: skip
    return backbone.eval()


def test_cls_attention_equals_the_softmax_timm_computes():
    torch.manual_seed(0)
    images = torch.rand(2, 3, 16, 16)
    backbone = tiny_backbone(fused_attn=False, reg_tokens=2)
    captured = {}
    backbone.blocks[-1].attn.attn_drop.register_forward_hook(lambda m, i, out: captured.setdefault("attn", out))
    with torch.no_grad():
        backbone(normalize(images))
    reference = captured["attn"][:, :, 0, backbone.num_prefix_tokens :].reshape(2, 3, 4, 4)  # CLS row over patches
    torch.testing.assert_close(cls_attention_maps(backbone, images), reference)
    fused = tiny_backbone(fused_attn=True, reg_tokens=2)
    fused.load_state_dict(backbone.state_dict())
    torch.testing.assert_close(cls_attention_maps(fused, images), reference)  # the fast path changes nothing


def test_pca_rgb_spans_zero_to_one_and_follows_the_main_direction():
    tokens = torch.zeros(2, 8, 4, 4)
    tokens[:, 0, :, 2:] = 5.0  # right half differs along one direction
    tokens += 0.01 * torch.randn_like(tokens)
    colours = pca_rgb(tokens)
    assert colours.shape == (2, 3, 4, 4) and colours.min() >= 0 and colours.max() <= 1
    first = colours[:, 0]
    assert (first[:, :, 2:].mean() - first[:, :, :2].mean()).abs() > 0.9  # the halves are told apart


def test_render_pictures_draws_both_figures():
    backbone = tiny_backbone(fused_attn=True)
    images = torch.rand(3, 3, 16, 16)
    tokens = torch.randn(3, 24, 4, 4)
    pictures = render_pictures(backbone, images, tokens)
    assert pictures["attention_maps"].size == (4 * 98, 3 * 98)  # image + 3 heads per row, one row per image
    assert pictures["patch_pca"].size == (2 * 98, 3 * 98)


def test_training_curve_picture_draws_a_panel_per_logged_group():
    records = [{"step": s, "loss": 5.0 - s / 10, "lr": 1e-3, "teacher_entropy": 0.9} for s in range(1, 11)]
    width, height = plot_training_curve(records).size
    assert (width, height) == (round(3 * 3.6 * 110), round(3.0 * 110))  # loss, health, lr; no online k-NN
    with_knn = plot_training_curve([{**r, "online_knn_top1": 0.5} for r in records])
    assert with_knn.size[0] == round(4 * 3.6 * 110)


def test_training_curve_picture_refuses_an_empty_log():
    with pytest.raises(ValueError, match="no training metrics"):
        plot_training_curve([])
