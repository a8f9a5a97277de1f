import pytest
import torch

from dinoflow.models.backbone import build_backbone, patch_tokens
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
    assert DINOHead(
        32, 10, norm_last_layer=False
    ).last_layer.parametrizations.weight.original0.requires_grad


def test_multicrop_forward_groups_by_resolution(tiny_backbone):
    backbone, dim = tiny_backbone
    model = DINOModel(backbone, DINOHead(dim, 10, 16, 8))
    crops = [torch.randn(2, 3, 16, 16)] * 2 + [torch.randn(2, 3, 8, 8)] * 3
    logits, feats = model(crops)
    assert logits.shape == (10, 10) and feats.shape == (10, dim)
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
