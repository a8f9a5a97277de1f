"""The image-in pyfunc in process: encoded images or files in, the backbone's CLS embeddings of the
evaluation views out; a bad image is refused with its row and what was wrong."""

from __future__ import annotations

import base64

import pandas as pd
import pytest
import torch

from dinoflow.data.multicrop import normalize
from dinoflow.registry.image_model import ImageEmbedder, ImageRequestError, example_images
from dinoflow.train.builders import build_backbone_from_config
from tests.eval.test_features import PREPROCESSING, encoded, stored_views


@pytest.fixture
def embedder(tiny_config):
    return ImageEmbedder(build_backbone_from_config(tiny_config, drop_path=False), PREPROCESSING)


@pytest.fixture
def images(tmp_path) -> list:
    """Three files of other sizes and modes than the model's input: (path, encoded bytes)."""
    shapes = [(40, 28, "RGB", "PNG"), (20, 20, "RGBA", "PNG"), (33, 70, "L", "PNG")]
    files = []
    for i, (width, height, mode, fmt) in enumerate(shapes):
        data = encoded(width, height, mode, fmt, seed=i)
        (tmp_path / f"{i}.png").write_bytes(data)
        files.append((tmp_path / f"{i}.png", data))
    return files


def test_bytes_base64_and_paths_give_the_evaluation_embeddings(embedder, images):
    with torch.no_grad():
        expected = embedder.backbone(normalize(stored_views([p for p, _ in images], PREPROCESSING))).numpy()
    as_bytes = embedder.predict(pd.DataFrame({"image": [d for _, d in images]}))
    assert as_bytes.shape == (3, 32) and as_bytes.dtype == "float32"
    torch.testing.assert_close(torch.from_numpy(as_bytes), torch.from_numpy(expected), rtol=0, atol=1e-5)
    text = [base64.b64encode(d).decode() for _, d in images]
    assert (embedder.predict(pd.DataFrame({"image": text})) == as_bytes).all()  # an `inputs` JSON payload
    assert (embedder.predict(pd.DataFrame({"image": [t.encode() for t in text]})) == as_bytes).all()
    assert (embedder.predict(pd.DataFrame({"path": [str(p) for p, _ in images]})) == as_bytes).all()


def test_patch_tokens_on_request(embedder, images):
    tokens = embedder.predict(pd.DataFrame({"image": [d for _, d in images]}), params={"output": "patch_tokens"})
    assert tokens.shape == (3, (16 // 8) ** 2, 32)  # (N, L, D): a 16 px view in 8 px patches
    with pytest.raises(ImageRequestError, match="param 'output' must be one of \\['cls', 'patch_tokens'\\]; got 'x'"):
        embedder.predict(example_images(16), params={"output": "x"})


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ({"image": [b"\x89PNG\r\n\x1a\n truncated"]}, r"image in row 1 of 2 \(18 bytes starting .*\) could not be read"),
        ({"image": ["not base64!"]}, "image in row 1 of 2 is text but not base64"),
        ({"image": [b"hello"]}, r"image in row 1 of 2 \(5 bytes starting b'hello'\) could not be read as an image: not "
                                "in any image format Pillow reads"),
        ({"path": ["/no/such/file.png"]}, r"image in row 1 of 2 \(file '/no/such/file.png'\) could not be read as an "
                                          "image: .*No such file"),
    ],
)  # fmt: skip
def test_a_bad_image_is_named(embedder, images, rows, message):
    column = next(iter(rows))
    good = str(images[0][0]) if column == "path" else images[0][1]
    with pytest.raises(ImageRequestError, match=message) as raised:
        embedder.predict(pd.DataFrame({column: [good, *rows[column]]}))
    assert raised.value.get_http_status_code() == 400


def test_a_request_holds_its_images_in_one_column(embedder, images):
    both = pd.DataFrame({"image": [images[0][1]], "path": [str(images[0][0])]})
    with pytest.raises(ImageRequestError, match="has 1 values in 'image' and 1 in 'path' for 1 rows"):
        embedder.predict(both)
