"""Curation embeddings: the pixel thumbnail's invariances, the whitening against hand-computed
values, and the backbone embedding being the CLS token evaluation scores (same preprocessing,
same token)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from dinoflow.curation.embeddings import backbone_embeddings, load_view, pixel_embedding, pixel_embeddings, whiten
from dinoflow.eval.features import extract_features
from dinoflow.train.builders import build_backbone_from_config


def test_pixel_embedding_is_unit_and_ignores_brightness_and_contrast():
    view = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    base = pixel_embedding(view, 16)
    assert base.shape == (3 * 256,) and abs(float(base.norm()) - 1) < 1e-5
    shifted = pixel_embedding(0.7 * view + 0.1, 16)  # a contrast and brightness change
    assert float(base @ shifted) > 0.99999
    assert float(pixel_embedding(torch.full((3, 32, 32), 0.5), 16).abs().max()) == 0.0  # a flat image matches nothing


def test_pixel_embedding_tells_colours_apart_that_grey_would_merge():
    """Two images of one layout whose object and ground swap hues of equal luminance: every
    channel is (object − ground colour) x the same centred pattern, so the cosine is the one of
    the two colour differences, d1·d2 / (|d1| |d2|), hand-computed; in grey both are the same
    centred disc, cosine 1."""
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    disc = (((yy - 12) ** 2 + (xx - 18) ** 2) < 64).float()
    ground_1, object_1 = torch.tensor([0.1, 0.2, 0.3]), torch.tensor([0.9, 0.5, 0.2])
    ground_2, object_2 = torch.tensor([0.3, 0.2, 0.1]), torch.tensor([0.2, 0.6, 0.6])
    views = [ground[:, None, None] + (obj - ground)[:, None, None] * disc
             for ground, obj in ((ground_1, object_1), (ground_2, object_2))]  # fmt: skip
    d1, d2 = object_1 - ground_1, object_2 - ground_2
    expected = float(d1 @ d2 / (d1.norm() * d2.norm()))  # 0.165
    assert float(pixel_embedding(views[0], 8) @ pixel_embedding(views[1], 8)) == pytest.approx(expected, abs=1e-5)
    grey = [pixel_embedding(view, 8, colour=False) for view in views]  # both objects lighter than their grounds
    assert grey[0].shape == (64,) and float(grey[0] @ grey[1]) == pytest.approx(1.0, abs=1e-5)


def test_pixel_embedding_barely_moves_under_a_small_colour_cast():
    """The planted copies' cast (near_copy: gain 0.92-1.08 and offset ±10/255 per channel)."""
    view = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(1))
    cast = view * torch.tensor([0.92, 1.08, 1.0])[:, None, None] + torch.tensor([0.04, -0.04, 0.0])[:, None, None]
    assert float(pixel_embedding(view, 8) @ pixel_embedding(cast, 8)) > 0.99


def test_pixel_embeddings_of_files_match_one_by_one(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)).save(paths[-1])
    many = pixel_embeddings(paths, size=32, thumbnail=8, tolerance=0.06, workers=2)
    view = load_view(paths[1], 32)
    assert many.shape == (3, 16, 3 * 64) and many.dtype == np.float32  # 16 crop variants, the plain view first
    np.testing.assert_allclose(many[1, 0], pixel_embedding(view, 8).numpy(), atol=1e-6)
    cut_left = F.interpolate(view[None, :, :, 2:], size=(32, 32), mode="bilinear", antialias=True)[0]  # 2 px = 6% of 32
    assert min(np.abs(many[1] - pixel_embedding(cut_left, 8).numpy()).max(axis=1)) < 1e-6
    assert pixel_embeddings(paths[:1], tolerance=0.0).shape == (1, 1, 3 * 64)
    assert pixel_embeddings([], tolerance=0.0).shape == (0, 1, 3 * 64)


def test_whitening_matches_hand_computed_cosines():
    # Plain views (variant 0) (±2, 0), (0, ±1): mean 0, covariance diag(8/3, 2/3) (N - 1 = 3).
    # Shrinkage 0.5 adds 0.5 · 8/3: Λ_s = diag(4, 2), so (1, 1) ↦ (1/2, 1/√2) and (1, -1) ↦ (1/2, -1/√2),
    # whose cosine is (1/4 - 1/2) / (3/4) = -1/3 (it was 0). Cosines do not depend on the eigenbasis' signs.
    plain = np.array([[2, 0], [-2, 0], [0, 1], [0, -1]], np.float32)
    second = np.array([[1, 1], [1, -1], [1, 1], [1, -1]], np.float32)
    out = whiten(np.stack([plain, second], axis=1), shrinkage=0.5)
    assert out.shape == (4, 2, 2)
    np.testing.assert_allclose(np.linalg.norm(out, axis=2), 1.0, atol=1e-6)
    assert float(out[0, 1] @ out[1, 1]) == pytest.approx(-1 / 3, abs=1e-6)
    assert float(out[0, 0] @ out[2, 0]) == pytest.approx(0.0, abs=1e-6)  # the axes stay orthogonal
    assert np.array_equal(whiten(plain[:1, None], 0.5), plain[:1, None])  # one image: nothing to fit


def test_whitening_separates_look_alikes_and_keeps_copies():
    # A folder of centred look-alikes: every image is the same silhouette plus a large shared
    # variation (direction 0, e.g. size) and small individual detail (the other 15 directions).
    rng = np.random.default_rng(0)
    silhouette = np.zeros(16, np.float32)
    silhouette[0] = 5.0
    images = silhouette + np.concatenate([rng.normal(0, 1.0, (500, 1)), rng.normal(0, 0.15, (500, 15))], axis=1)
    copy = images[0] + rng.normal(0, 0.01, 16)  # a re-encode moves every direction a little
    rows = F.normalize(torch.tensor(np.vstack([images, copy[None]]), dtype=torch.float32), dim=1).numpy()[:, None]
    white = whiten(rows, shrinkage=0.01)
    look_alike_before = float(rows[0, 0] @ rows[1, 0])
    look_alike_after = float(white[0, 0] @ white[1, 0])
    assert look_alike_before > 0.95 and look_alike_after < 0.5  # distinct images stop passing for copies
    assert float(white[0, 0] @ white[-1, 0]) > 0.99  # the copy still does


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
    cls = torch.nn.functional.normalize(extract_features(backbone, [views]).variant("cls1"), dim=1)
    assert ours.shape == (5, 1, cls.shape[1])
    np.testing.assert_allclose(ours[:, 0], cls.numpy(), atol=2e-2)  # both under bf16 autocast
    assert np.allclose(np.linalg.norm(ours, axis=2), 1.0, atol=1e-5)
