"""Curation embeddings: the pixel thumbnail's invariances, and the backbone embedding being the
CLS token evaluation scores (same preprocessing, same token)."""

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from dinoflow.curation.embeddings import backbone_embeddings, load_view, pixel_embedding, pixel_embeddings
from dinoflow.eval.features import extract_features
from dinoflow.train.builders import build_backbone_from_config


def test_pixel_embedding_is_unit_and_ignores_brightness_and_contrast():
    view = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    base = pixel_embedding(view, 16)
    assert base.shape == (256,) and abs(float(base.norm()) - 1) < 1e-5
    shifted = pixel_embedding(0.7 * view + 0.1, 16)  # a contrast and brightness change
    assert float(base @ shifted) > 0.99999
    assert float(pixel_embedding(torch.full((3, 32, 32), 0.5), 16).abs().max()) == 0.0  # a flat image matches nothing


def test_pixel_embeddings_of_files_match_one_by_one(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)).save(paths[-1])
    many = pixel_embeddings(paths, size=32, thumbnail=8, tolerance=0.06, workers=2)
    view = load_view(paths[1], 32)
    assert many.shape == (3, 16, 64) and many.dtype == np.float32  # 16 crop variants, the plain view first
    np.testing.assert_allclose(many[1, 0], pixel_embedding(view, 8).numpy(), atol=1e-6)
    cut_left = F.interpolate(view[None, :, :, 2:], size=(32, 32), mode="bilinear", antialias=True)[0]  # 2 px = 6% of 32
    assert min(np.abs(many[1] - pixel_embedding(cut_left, 8).numpy()).max(axis=1)) < 1e-6
    assert pixel_embeddings(paths[:1], tolerance=0.0).shape == (1, 1, 64)


def test_backbone_embedding_is_the_cls_token_evaluation_scores(tmp_path, tiny_config):
    rng = np.random.default_rng(1)
    paths = []
    for i in range(5):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(paths[-1])
    backbone = build_backbone_from_config(tiny_config, drop_path=False)
    size = tiny_config.crops.global_size
    ours = backbone_embeddings(backbone, paths, size, batch_size=2)
    views = torch.stack([load_view(p, size) for p in paths])
    cls = torch.nn.functional.normalize(extract_features(backbone, [views]).variants["cls1"], dim=1)
    assert ours.shape == (5, 1, cls.shape[1])
    np.testing.assert_allclose(ours[:, 0], cls.numpy(), atol=2e-2)  # both under bf16 autocast
    assert np.allclose(np.linalg.norm(ours, axis=2), 1.0, atol=1e-5)
