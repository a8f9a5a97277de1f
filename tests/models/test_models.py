import pytest
import torch

from dinoflow.models.backbone import build_backbone, patch_tokens, use_fused_attention
from dinoflow.models.heads import DINOHead
from dinoflow.models.teacher import DINOModel, make_teacher, update_teacher


@pytest.fixture
def tiny_backbone():
    torch.manual_seed(0)
    return build_backbone("vit_tiny_patch16_224", img_size=16, patch_size=4, embed_dim=32, depth=2,
                          num_heads=2, fused_attn=False)  # fmt: skip


def test_backbone_accepts_global_and_local_sizes(tiny_backbone):
    backbone, dim = tiny_backbone
    assert dim == 32
    for size in (16, 8, 24):
        out = backbone(torch.randn(3, 3, size, size))
        assert out.shape == (3, 32) and torch.isfinite(out).all()
    cls, patches = patch_tokens(backbone, torch.randn(2, 3, 16, 16))
    assert cls.shape == (2, 32) and patches.shape == (2, 16, 32)


def test_head_shapes_and_frozen_prototype_norm():
    head = DINOHead(32, 100, hidden_dim=64, bottleneck_dim=16, nlayers=3, norm_last_layer=True)
    out = head(torch.randn(5, 32))
    assert out.shape == (5, 100)
    g = head.last_layer.parametrizations.weight.original0
    assert not g.requires_grad
    # With unit prototype norms and an L2-normalised bottleneck the scores are cosines.
    assert out.abs().max() <= 1.0 + 1e-5
    assert DINOHead(32, 10, norm_last_layer=False).last_layer.parametrizations.weight.original0.requires_grad


def test_multicrop_forward_groups_by_resolution(tiny_backbone):
    backbone, dim = tiny_backbone
    model = DINOModel(backbone, DINOHead(dim, 10, 16, 8))
    crops = [torch.randn(2, 3, 16, 16)] * 2 + [torch.randn(2, 3, 8, 8)] * 3
    logits, feats, patch_logits = model(crops)
    assert logits.shape == (10, 10) and feats.shape == (10, dim) and patch_logits is None
    # Same result as running every crop on its own: grouping is an optimisation only.
    single = torch.cat([model.backbone(c) for c in crops])
    torch.testing.assert_close(feats, single, atol=1e-5, rtol=1e-5)


def test_ema_update_formula(tiny_backbone):
    backbone, dim = tiny_backbone
    student = DINOModel(backbone, DINOHead(dim, 10, 16, 8))
    teacher = make_teacher(student)
    assert all(not p.requires_grad for p in teacher.parameters())
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
    before = [p.clone() for p in teacher.parameters()]
    update_teacher(student, teacher, momentum=0.9)
    for t_old, t_new, s in zip(before, teacher.parameters(), student.parameters(), strict=True):
        torch.testing.assert_close(t_new, 0.9 * t_old + 0.1 * s)


def test_masked_forward_yields_patch_logits_and_masking_changes_only_the_student(tiny_backbone):
    backbone, dim = tiny_backbone
    head = DINOHead(dim, 10, 16, 8)
    model = DINOModel(backbone, head, patch_head=head)  # shared head, as DINOv2's default
    torch.manual_seed(1)
    model.mask_token.data.normal_()
    crops = [torch.randn(2, 3, 16, 16)] * 2 + [torch.randn(2, 3, 8, 8)]
    masks = torch.zeros(4, 16, dtype=torch.bool)
    masks[0, :5] = True
    masks[3, 10:12] = True
    student = model(crops, masks)
    teacher = model(crops, masks, apply_masks=False)
    plain = model(crops)
    assert student.patch_logits.shape == (7, 10) and teacher.patch_logits.shape == (7, 10)
    torch.testing.assert_close(teacher.cls_logits, plain.cls_logits)  # the teacher sees every patch
    assert not torch.allclose(student.cls_features[0], plain.cls_features[0])  # image 0 was masked
    torch.testing.assert_close(student.cls_features[1], plain.cls_features[1])  # image 1 was not


def test_register_tokens_layerscale_and_swiglu_options():
    backbone, dim = build_backbone(
        "vit_tiny_patch16_224", img_size=16, patch_size=4, embed_dim=48, depth=2, num_heads=2,
        reg_tokens=4, layer_scale_init=1e-5, mlp="swiglu",
    )  # fmt: skip
    assert backbone.num_prefix_tokens == 5
    cls, patches = patch_tokens(backbone, torch.randn(2, 3, 16, 16))
    assert cls.shape == (2, 48) and patches.shape == (2, 16, 48)
    names = {n for n, _ in backbone.named_parameters()}
    assert any(n.endswith("ls1.gamma") for n in names)
    mlp_params = sum(p.numel() for n, p in backbone.named_parameters() if "blocks.0.mlp" in n)
    plain = build_backbone("vit_tiny_patch16_224", img_size=16, patch_size=4, embed_dim=48, depth=2, num_heads=2)[0]
    plain_mlp = sum(p.numel() for n, p in plain.named_parameters() if "blocks.0.mlp" in n)
    assert abs(mlp_params - plain_mlp) / plain_mlp < 0.05  # SwiGLU keeps the MLP's size


@pytest.mark.parametrize(
    "arch",
    ["vit_tiny_patch16_224", "vit_small_patch16_224", "vit_small_patch8_224", "vit_base_patch16_224",
     "vit_large_patch14_dinov2", "vit_giant_patch14_dinov2"],
)  # fmt: skip
def test_every_backbone_family_builds_by_name_at_any_input_size(arch):
    # Shrunk depth/width keep this fast; the arch's own patch size, MLP type and options remain.
    backbone, dim = build_backbone(arch, img_size=28, embed_dim=48, depth=1, num_heads=2, fused_attn=False)
    patch = backbone.patch_embed.patch_size[0]
    for size in (2 * patch, 3 * patch):
        out = backbone(torch.randn(2, 3, size, size))
        assert out.shape == (2, dim) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None for p in backbone.parameters() if p.requires_grad and p.ndim > 1)


def test_fused_and_plain_attention_are_the_same_function():
    """The training loop picks the kernel per device (``model.fused_attn: null``): SDPA on GPUs,
    matmul + softmax on CPUs; switching must not change what the network computes."""
    torch.manual_seed(0)
    backbone, _ = build_backbone("vit_tiny_patch16_224", img_size=16, patch_size=4, embed_dim=32, depth=2,
                                 num_heads=2, fused_attn=True)  # fmt: skip
    images = torch.randn(3, 3, 16, 16)
    fused = backbone.eval()(images)
    use_fused_attention(backbone, False)
    assert not any(getattr(m, "fused_attn", False) for m in backbone.modules())
    torch.testing.assert_close(backbone(images), fused, rtol=1e-5, atol=1e-5)


def test_conv_stem_keeps_the_token_grid_and_trains():
    """Xiao et al. 2021: log2(p) stride-2 3x3 convolutions + 1x1, same (B, H/p, W/p, D) tokens."""
    patchify, _ = build_backbone("vit_tiny_patch16_224", 32, patch_size=8, embed_dim=32, depth=1, num_heads=2)
    conv, _ = build_backbone("vit_tiny_patch16_224", 32, patch_size=8, embed_dim=32, depth=1, num_heads=2, stem="conv")
    x = torch.randn(2, 3, 32, 32)
    assert conv.patch_embed(x).shape == patchify.patch_embed(x).shape == (2, 4, 4, 32)
    strides = [m.stride[0] for m in conv.patch_embed.proj if isinstance(m, torch.nn.Conv2d)]
    assert strides == [2, 2, 2, 1]
    assert conv(torch.randn(2, 3, 16, 16)).shape == (2, 32)  # local crops: 2 x 2 tokens
    (conv(x) * torch.randn(2, 32)).sum().backward()  # (a plain sum of LayerNorm outputs has no gradient)
    assert conv.patch_embed.proj[0].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="power-of-two patch_size"):
        build_backbone("vit_tiny_patch16_224", 36, patch_size=6, embed_dim=32, depth=1, num_heads=2, stem="conv")
