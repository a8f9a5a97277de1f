"""The ONNX export runs in onnxruntime with PyTorch's outputs, for any batch size."""

import torch

from dinoflow.models.backbone import build_backbone
from dinoflow.models.export import export_onnx, onnx_max_abs_diff


def test_onnx_export_matches_pytorch_within_1e_4(tmp_path):
    torch.manual_seed(0)
    backbone, dim = build_backbone("vit_tiny_patch16_224", img_size=32, patch_size=8, embed_dim=48, depth=2,
                                   num_heads=2, fused_attn=True, reg_tokens=2)  # fmt: skip
    path = export_onnx(backbone, torch.randn(2, 3, 32, 32), tmp_path / "backbone.onnx")
    for batch in (1, 5):  # the batch dimension is dynamic
        assert onnx_max_abs_diff(path, backbone, torch.randn(batch, 3, 32, 32)) < 1e-4
