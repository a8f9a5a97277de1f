"""ONNX export of a backbone, checked against PyTorch with onnxruntime.

The graph comes from ``torch.export`` (``torch.onnx.export(dynamo=True)``) with a dynamic batch
dimension; serving stacks that cannot run PyTorch (Triton's ONNX backend, onnxruntime in C++,
Java or the browser) load it as is.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dinoflow.atomic import atomic_path

log = logging.getLogger(__name__)

INPUT_NAME = "images"


def export_onnx(backbone: nn.Module, example: torch.Tensor, path: Path) -> Path:
    """Write ``backbone`` as ONNX: input ``images`` (B, 3, S, S) normalised float32 → (B, D) embeddings.

    Args:
        example: (B, 3, S, S) with B >= 2 (a size-1 batch would be specialised away).
    """
    path = Path(path)
    with atomic_path(path, "ONNX export") as tmp:
        torch.onnx.export(
            backbone.eval(),
            (example,),
            str(tmp),
            input_names=[INPUT_NAME],
            output_names=["embeddings"],
            dynamo=True,
            dynamic_shapes={"x": {0: torch.export.Dim("batch")}},
            verbose=False,
        )
    return path


@torch.no_grad()
def onnx_max_abs_diff(path: Path, backbone: nn.Module, images: torch.Tensor) -> float:
    """Largest |onnxruntime - PyTorch| over the embeddings of ``images`` (fp32, CPU)."""
    import onnxruntime  # an export-check dependency, not needed for training

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (onnx_out,) = session.run(None, {INPUT_NAME: images.numpy().astype(np.float32)})
    return float(np.abs(onnx_out - backbone.eval()(images).numpy()).max())


class OnnxExport:
    """The backbone's ONNX file, exported once however many times registration is tried, and
    checked against torch on fresh inputs."""

    def __init__(self, backbone: nn.Module, size: int, path: Path):
        self.backbone, self.size, self.path, self.check = backbone, size, path, {}
        # Batch 2, not 1: torch.export specialises a size-1 dimension and the model would accept batch 1 only.
        self.example = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))

    def ensure(self) -> dict[str, str]:
        """Export if not done yet; returns the tag ``onnx_max_abs_diff`` (|onnxruntime - torch|)."""
        if not self.path.exists():
            export_onnx(self.backbone, self.example, self.path)
            diff = onnx_max_abs_diff(self.path, self.backbone, torch.randn(3, 3, self.size, self.size))
            self.check = {"onnx_max_abs_diff": f"{diff:.2e}"}
            log.info("ONNX export: max |onnxruntime - torch| = %.2e", diff)
        return self.check
