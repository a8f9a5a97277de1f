"""``image_view``: an encoded image is prepared for the backbone exactly as evaluation prepares the
same image once the dataset node has stored it."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dinoflow.data.multicrop import normalize
from dinoflow.data.shards import ImageRecord, ShardReader, build_shard, save_shard
from dinoflow.eval.features import (
    ImagePreprocessing,
    evaluation_batches,
    evaluation_views,
    extract_features,
    image_view,
    view_batches,
)
from dinoflow.models.backbone import build_backbone

PREPROCESSING = ImagePreprocessing(image_size=16, max_side=24, max_aspect=1.5, background=(0, 0, 0))


def encoded(width: int, height: int, mode: str, fmt: str, seed: int) -> bytes:
    """A random image of ``mode`` encoded as ``fmt``."""
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, channels), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode).save(buffer, format=fmt)
    return buffer.getvalue()


def stored_views(files: list[Path], preprocessing: ImagePreprocessing) -> torch.Tensor:
    """(N, 3, S, S): the evaluation pipeline's views of ``files``: shard written by the dataset
    node's ``build_shard``, read back by ``evaluation_batches``."""
    p = preprocessing
    shard = build_shard([ImageRecord(f) for f in files], p.max_side, p.max_aspect, p.background)
    path = save_shard(shard, files[0].parent / "eval-00000.pt")
    return next(evaluation_batches(ShardReader([path], [len(files)]), p.image_size, batch_size=len(files)))


@pytest.mark.parametrize(
    ("width", "height", "mode", "fmt"),
    [(40, 28, "RGB", "PNG"), (20, 20, "RGBA", "PNG"), (33, 70, "L", "PNG"), (48, 36, "RGB", "JPEG")],
)
def test_encoded_bytes_get_the_evaluation_view(tmp_path, width, height, mode, fmt):
    data = encoded(width, height, mode, fmt, seed=width)
    file = tmp_path / f"image.{fmt.lower()}"
    file.write_bytes(data)
    expected = stored_views([file], PREPROCESSING)[0]
    assert torch.equal(image_view(data, PREPROCESSING), expected)  # bytes, as a request carries them
    assert torch.equal(image_view(file, PREPROCESSING), expected)  # a path, for batch use
    assert expected.shape == (3, 16, 16)


def test_bytes_that_are_no_image_raise():
    with pytest.raises(OSError, match="cannot identify image file"):
        image_view(b"this is not an image", PREPROCESSING)


@pytest.mark.parametrize(("side", "dtype"), [(16, torch.uint8), (20, torch.float32)])
def test_views_decoded_once_are_the_streamed_views(tmp_path, side, dtype):
    """Stored 16 x 16 squares are kept as their bytes (nothing to interpolate); 20 px images are
    resized to 16, so their views stay floats. Either way the batches are the streamed views."""
    files = []
    for i in range(5):
        files.append(tmp_path / f"{i}.png")
        files[-1].write_bytes(encoded(side, side, "RGB", "PNG", seed=i))
    p = PREPROCESSING
    shard = build_shard([ImageRecord(f) for f in files], p.max_side, p.max_aspect, p.background)
    reader = ShardReader([save_shard(shard, tmp_path / "eval-00000.pt")], [len(files)])
    views = evaluation_views(reader, p.image_size)
    assert views.dtype == dtype and views.shape == (5, 3, 16, 16)
    assert torch.equal(torch.cat(list(view_batches(views, batch_size=2))), stored_views(files, p))


def test_segmentation_inputs_pair_each_blocks_patch_tokens_with_its_cls_token():
    """The segmentation probe's input: the last m blocks' patch tokens (oldest first, as a
    (N, m D, h, w) grid) and the CLS tokens of the same blocks, as the backbone computes them."""
    backbone, dim = build_backbone("vit_tiny_patch16_224", img_size=16, patch_size=4, embed_dim=24, depth=4,
                                   num_heads=2, fused_attn=False)  # fmt: skip
    images = torch.rand(5, 3, 16, 16)
    features = extract_features(backbone, [images[:3], images[3:]], patch_blocks=2)
    patches, cls = features.segmentation_inputs()
    assert patches.shape == (5, 2 * dim, 4, 4) and cls.shape == (5, 2 * dim)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        blocks = backbone.forward_intermediates(normalize(images), indices=2, norm=True, output_fmt="NLC",
                                                intermediates_only=True, return_prefix_tokens=True)  # fmt: skip
    for i, (block_patches, block_prefix) in enumerate(blocks):
        grid = block_patches.transpose(1, 2).reshape(5, dim, 4, 4).to(torch.bfloat16)
        assert torch.equal(patches[:, i * dim : (i + 1) * dim], grid)
        torch.testing.assert_close(cls[:, i * dim : (i + 1) * dim], block_prefix[:, 0].float())
    assert torch.equal(features.last_patch_tokens, patches[:, dim:])
    assert extract_features(backbone, [images], patch_blocks=0).patch_tokens is None
