import pytest

from dinoflow.models.backbone import build_backbone
from dinoflow.models.heads import DINOHead
from dinoflow.models.teacher import DINOModel
from dinoflow.train.optim import apply_schedules, build_optimizer, layer_id, parameter_settings


@pytest.fixture
def model():
    backbone, dim = build_backbone("vit_tiny_patch16_224", img_size=16, patch_size=4, embed_dim=32, depth=3,
                                   num_heads=2, layer_scale_init=1e-5)  # fmt: skip
    head = DINOHead(dim, 10, 16, 8, norm_last_layer=False)
    return DINOModel(backbone, head, patch_head=head)


def test_layer_ids():
    assert layer_id("backbone.patch_embed.proj.weight", 12) == 0
    assert layer_id("backbone.cls_token", 12) == 0 and layer_id("mask_token", 12) == 0
    assert layer_id("backbone.blocks.0.attn.qkv.weight", 12) == 1
    assert layer_id("backbone.blocks.11.mlp.fc2.weight", 12) == 12
    assert layer_id("backbone.norm.weight", 12) == 13 and layer_id("head.mlp.0.weight", 12) == 13


def test_weight_decay_and_lr_multipliers(model):
    settings = {n: parameter_settings(n, p, 3, 0.5, 0.2) for n, p in model.named_parameters()}
    assert settings["backbone.blocks.0.attn.qkv.weight"] == {
        "lr_scale": 0.5**3,
        "wd_scale": 1.0,
        "last_layer": False,
    }
    assert settings["backbone.blocks.0.attn.qkv.bias"]["wd_scale"] == 0.0
    assert settings["backbone.blocks.2.ls1.gamma"]["wd_scale"] == 0.0  # LayerScale
    assert settings["backbone.norm.weight"]["wd_scale"] == 0.0
    assert settings["backbone.pos_embed"]["wd_scale"] == 1.0  # as in DINO and DINOv2
    assert settings["backbone.patch_embed.proj.weight"]["lr_scale"] == pytest.approx(0.5**4 * 0.2)
    assert settings["head.mlp.0.weight"]["lr_scale"] == 1.0
    assert settings["head.last_layer.parametrizations.weight.original1"]["last_layer"]


def test_apply_schedules_freezes_the_last_layer(model):
    optimizer = build_optimizer(model, 3, 0.5, 0.2)
    apply_schedules(optimizer, lr=1e-3, weight_decay=0.04, last_layer_lr_scale=0.0)
    for group in optimizer.param_groups:
        expected = 0.0 if group["last_layer"] else 1e-3 * group["lr_scale"]
        assert group["lr"] == pytest.approx(expected)
        assert group["weight_decay"] == pytest.approx(0.04 * group["wd_scale"])
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert {id(p) for g in optimizer.param_groups for p in g["params"]} == trainable
