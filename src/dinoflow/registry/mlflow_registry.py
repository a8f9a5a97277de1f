"""Model registry: log the teacher backbone, register a version, tag it, set an alias."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import mlflow
import numpy as np
import torch
from mlflow.tracking import MlflowClient


def register_backbone(
    backbone: torch.nn.Module,
    input_example: np.ndarray,
    model_name: str,
    alias: str,
    tags: Mapping[str, Any],
) -> dict[str, Any]:
    """Log ``backbone`` as a pt2 (torch.export) model in the active run and register it.

    Args:
        input_example: (B, 3, S, S) float32 with B >= 2, normalised like training images.

    Returns:
        ``{"name", "version", "alias", "model_uri", "logged_model_uri"}``.
    """
    info = mlflow.pytorch.log_model(
        backbone.eval(),
        name="backbone",
        input_example=input_example,
        registered_model_name=model_name,
        serialization_format="pt2",
    )
    client = MlflowClient()
    version = str(info.registered_model_version)
    for key, value in tags.items():
        client.set_model_version_tag(model_name, version, key, str(value))
    client.set_registered_model_alias(model_name, alias, version)
    return {
        "name": model_name,
        "version": version,
        "alias": alias,
        "model_uri": f"models:/{model_name}@{alias}",
        "logged_model_uri": info.model_uri,
    }
