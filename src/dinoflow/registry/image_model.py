"""The registered backbone as an MLflow model with two flavours, one logged model:

- ``pytorch``: the pt2 (torch.export) program, (B, 3, S, S) normalised floats → (B, D) CLS
  features, for ``mlflow.pytorch.load_model("models:/<name>@champion")``;
- ``python_function``: encoded images in, embeddings out, for ``mlflow.pyfunc.load_model`` and
  ``mlflow models serve``. Each image goes through ``eval.features.image_view``, the function that
  gives evaluation its view of a stored image, so serving and evaluation cannot drift apart.

Both flavours in one model, rather than a second logged model beside the backbone, so that
``models:/<name>@champion`` is one thing: whatever the gate promoted is what serving answers with,
and promotion and rollback need no companion alias kept in step.

The pyfunc is a ``loader_module`` flavour (``_load_pyfunc`` below) whose data is the version's
``config.yaml`` and safetensors weights plus ``preprocessing.json``: loading it runs no pickle
(MLflow 3 refuses cloudpickled ``PythonModel`` objects by default) and needs no network, only
torch and dinoflow importable (``mlflow models serve --env-manager local``).

Requests: a DataFrame with one column, ``image`` (encoded bytes; base64 strings in JSON, which
the scoring server decodes for the binary column) or ``path`` (files the server can read, for
batch use). Param ``output``: ``"cls"`` (default, (N, D)) or ``"patch_tokens"`` ((N, L, D)).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import io
import json
import re
import shutil
import sys
import tempfile
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from mlflow.models import Model, ModelSignature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.types import ColSpec, DataType, ParamSchema, ParamSpec, Schema, TensorSpec
from PIL import Image, UnidentifiedImageError
from torch import nn

from dinoflow.data.multicrop import normalize
from dinoflow.eval.features import ImagePreprocessing, image_view
from dinoflow.train.builders import load_backbone
from dinoflow.train.run_files import BACKBONE_NAME

IMAGE, PATH = "image", "path"
OUTPUTS = ("cls", "patch_tokens")
PREPROCESSING_FILE = "preprocessing.json"
PT2_DIR = "pt2"  # the pytorch flavour's data; the pyfunc's lives under data/ (MLflow's layout)
BASE64_TEXT = re.compile(rb"[A-Za-z0-9+/=\s]+")
BATCH = 64  # images decoded and embedded at a time: a batch of paths may be a whole folder


class ImageRequestError(MlflowException):
    """A request the model cannot answer: the scoring server returns it as HTTP 400 with its message."""

    def __init__(self, message: str) -> None:
        super().__init__(message, error_code=INVALID_PARAMETER_VALUE)


class ImageEmbedder:
    """Encoded images or image files → embeddings of a frozen backbone, in fp32."""

    def __init__(self, backbone: nn.Module, preprocessing: ImagePreprocessing) -> None:
        self.backbone = backbone.eval()
        self.preprocessing = preprocessing

    def predict(self, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> np.ndarray:
        """Args:
            model_input: N rows, column ``image`` (bytes, or base64 str) or ``path`` (str).
            params: ``{"output": "cls" | "patch_tokens"}``.

        Returns:
            (N, D) float32 CLS embeddings (after the final norm, the pt2 flavour's output), or
            (N, L, D) patch tokens with L = (S / patch)².

        Raises:
            ImageRequestError: naming the row and what was wrong with it.
        """
        output = (params or {}).get("output", OUTPUTS[0])
        if output not in OUTPUTS:
            raise ImageRequestError(f"param 'output' must be one of {list(OUTPUTS)}; got {output!r}")
        column, sources = _sources(model_input)
        n, width = len(sources), self.backbone.num_features
        parts = [
            self._embed(self._views(column, sources, range(s, min(s + BATCH, n))), output) for s in range(0, n, BATCH)
        ]
        if parts:
            return np.concatenate(parts)
        return np.zeros((0, width) if output == "cls" else (0, 0, width), np.float32)

    def _views(self, column: str, sources: Sequence[Any], rows: range) -> torch.Tensor:
        """(B, 3, S, S) evaluation views of ``sources[rows]``."""
        return torch.stack([self._view(column, sources[i], i, len(sources)) for i in rows])

    @torch.inference_mode()
    def _embed(self, views: torch.Tensor, output: str) -> np.ndarray:
        """(B, 3, S, S) views in [0, 1] → (B, D) CLS or (B, L, D) patch tokens."""
        tokens = self.backbone.forward_features(normalize(views))  # (B, P + L, D), final norm applied
        if output == "cls":
            return self.backbone.forward_head(tokens).float().numpy()  # what the pt2 program returns
        return tokens[:, self.backbone.num_prefix_tokens :].float().numpy()

    def _view(self, column: str, value: Any, row: int, rows: int) -> torch.Tensor:
        if column == PATH:
            described = f"file {value!r}"
        else:
            value = _encoded_bytes(value, row, rows)
            described = f"{len(value)} bytes starting {value[:8]!r}"
        try:
            return image_view(value, self.preprocessing)
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            # Pillow's "cannot identify image file <BytesIO ...>" names no file a client knows.
            reason = "not in any image format Pillow reads" if isinstance(err, UnidentifiedImageError) else str(err)
            raise ImageRequestError(
                f"image in row {row} of {rows} ({described}) could not be read as an image: {reason}. "
                "Send PNG, JPEG or another format Pillow reads (base64 strings in JSON requests)."
            ) from err


def _sources(frame: Any) -> tuple[str, list[Any]]:
    """The one column a request holds its images in, and its values."""
    if not isinstance(frame, pd.DataFrame):
        raise ImageRequestError(
            f"images come as a table with an '{IMAGE}' or '{PATH}' column; got {type(frame).__name__}"
        )
    # The schema lets both columns be absent; MLflow may add a missing optional column as nulls.
    filled = [c for c in (IMAGE, PATH) if c in frame.columns and frame[c].notna().any()]
    if len(filled) != 1 or frame[filled[0]].isna().any():
        counts = {c: int(frame[c].notna().sum()) if c in frame.columns else 0 for c in (IMAGE, PATH)}
        raise ImageRequestError(
            f"every row needs one image, all rows in the same column: '{IMAGE}' (encoded bytes; base64 strings "
            f"in JSON) or '{PATH}' (files the server can read); this request has {counts[IMAGE]} values in "
            f"'{IMAGE}' and {counts[PATH]} in '{PATH}' for {len(frame)} rows"
        )
    return filled[0], frame[filled[0]].tolist()


def _encoded_bytes(value: Any, row: int, rows: int) -> bytes:
    """The image's encoded bytes. The scoring server decodes base64 for the binary column of a
    ``dataframe_split`` / ``dataframe_records`` payload, not of an ``inputs`` payload, and
    in-process callers may pass the text: base64 text is decoded here. Bytes made only of base64
    characters are that text, not an encoded image: image headers hold bytes outside the alphabet
    (PNG's first byte is 0x89, JPEG's 0xFF; TIFF, BMP, GIF and WebP headers hold binary sizes)."""
    if isinstance(value, bytes | bytearray | memoryview):
        value = bytes(value)
        try:
            return base64.b64decode(b"".join(value.split()), validate=True) if BASE64_TEXT.fullmatch(value) else value
        except binascii.Error:
            return value  # not base64 either: the image decoder says what is wrong with it
    if isinstance(value, str):
        try:
            return base64.b64decode("".join(value.split()), validate=True)
        except binascii.Error as err:
            raise ImageRequestError(f"image in row {row} of {rows} is text but not base64: {err}") from err
    raise ImageRequestError(
        f"image in row {row} of {rows} must be bytes or a base64 string; got {type(value).__name__}"
    )


def load_embedder(data_path: str | Path) -> ImageEmbedder:
    """The image embedder saved in a model's pyfunc data folder (``config.yaml``, the weights and
    ``preprocessing.json``)."""
    folder = Path(data_path)
    backbone, _ = load_backbone(folder)
    spec = json.loads((folder / PREPROCESSING_FILE).read_text())
    return ImageEmbedder(backbone, ImagePreprocessing(**{**spec, "background": tuple(spec["background"])}))


_load_pyfunc = load_embedder  # the name MLflow's loader_module contract calls


def example_images(size: int) -> pd.DataFrame:
    """The logged input example: two small PNGs (one not square, so the centre crop is exercised)."""
    rows = []
    for width, height in ((size, size), (size + size // 2, size)):
        ramp = np.add.outer(np.arange(height), np.arange(width)) * 255 // (height + width)
        pixels = np.stack([ramp, ramp[::-1], np.full_like(ramp, 96)], axis=-1).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG")
        rows.append(buffer.getvalue())
    return pd.DataFrame({IMAGE: rows})


def signature(embed_dim: int) -> ModelSignature:
    inputs = Schema([ColSpec(DataType.binary, IMAGE, required=False), ColSpec(DataType.string, PATH, required=False)])
    outputs = Schema([TensorSpec(np.dtype(np.float32), (-1, embed_dim), name="cls")])
    return ModelSignature(inputs, outputs, ParamSchema([ParamSpec("output", DataType.string, OUTPUTS[0])]))


def requirements() -> list[str]:
    """What the pyfunc imports besides dinoflow itself (installed with the project, not from PyPI).
    Listed, not inferred: inference would load the model in a subprocess, ~10 s per registration."""
    return [
        *mlflow.pytorch.get_default_pip_requirements(),
        *(f"{p}=={version(p)}" for p in ("timm", "safetensors", "pillow")),
    ]


def save_model(
    path: str,
    mlflow_model: Model,
    backbone: nn.Module,
    tensor_example: np.ndarray,
    files: Sequence[Path],
    preprocessing: ImagePreprocessing,
    serialization_format: str = "pt2",
) -> None:
    """Write the two-flavour model to ``path`` (``mlflow.models.Model.log`` calls this).

    Args:
        tensor_example: (B, 3, S, S) float32, B >= 2: what torch.export traces the pt2 program with.
        files: the version's files; ``config.yaml`` and the safetensors weights are needed here.
        serialization_format: of the ``pytorch`` flavour (``Model.log`` records it on the logged model too).
    """
    by_name = {Path(f).name: Path(f) for f in files}
    missing = [n for n in ("config.yaml", BACKBONE_NAME) if n not in by_name]
    if missing:
        raise ValueError(f"the image-in model is rebuilt from config.yaml and {BACKBONE_NAME}; files lack {missing}")
    with tempfile.TemporaryDirectory(prefix="dinoflow-model-") as tmp:
        data = Path(tmp) / "backbone"
        data.mkdir()
        for name in ("config.yaml", BACKBONE_NAME):
            shutil.copy2(by_name[name], data / name)
        (data / PREPROCESSING_FILE).write_text(json.dumps(dataclasses.asdict(preprocessing), indent=2) + "\n")
        mlflow.pyfunc.save_model(
            path,
            loader_module=__name__,
            data_path=str(data),
            mlflow_model=mlflow_model,
            signature=signature(backbone.num_features),
            input_example=(example_images(preprocessing.image_size), {"output": OUTPUTS[0]}),
            pip_requirements=requirements(),
        )
        # The pt2 program is saved by MLflow's own flavour, then moved in beside the pyfunc's data.
        pt2 = Path(tmp) / "pt2"
        mlflow.pytorch.save_model(
            backbone.eval(),
            str(pt2),
            input_example=tensor_example,
            serialization_format=serialization_format,
            pip_requirements=[],  # the model's requirements are the pyfunc's, written above
        )
        flavour = Model.load(str(pt2)).flavors["pytorch"]
        shutil.move(pt2 / flavour["model_data"], Path(path) / PT2_DIR)
    mlflow_model.add_flavor("pytorch", **{**flavour, "model_data": PT2_DIR})
    mlflow_model.model_size_bytes = sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
    mlflow_model.save(str(Path(path) / "MLmodel"))


def log_model(
    backbone: nn.Module, tensor_example: np.ndarray, files: Sequence[Path], preprocessing: ImagePreprocessing
) -> mlflow.models.model.ModelInfo:
    """Log the two-flavour model as ``backbone`` in the active run (an MLflow 3 logged model)."""
    return Model.log(
        artifact_path=None,  # deprecated by MLflow 3 in favour of name=, yet still a required argument
        name="backbone",
        flavor=sys.modules[__name__],
        backbone=backbone,
        tensor_example=tensor_example,
        files=files,
        preprocessing=preprocessing,
        serialization_format="pt2",
    )
