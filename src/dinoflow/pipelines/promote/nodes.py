"""Promote: the gated decision on @challenger against @champion (``registry.promotion``)."""

from __future__ import annotations

from typing import Any

from dinoflow.config.pipeline_params import EvaluateParams, PromoteParams, RegisterParams
from dinoflow.contracts import DatasetIndex
from dinoflow.registry.promotion import decide_promotion


def promote_node(
    registration: dict[str, Any],
    dataset_index: DatasetIndex,
    register: RegisterParams,
    evaluate: EvaluateParams,
    promote: PromoteParams,
) -> dict[str, Any]:
    """Returns the decision record written to ``data/08_reporting/promotion.json``. ``registration``
    orders this node after register (the alias it moved is what is decided on)."""
    return decide_promotion(register.model_name, dataset_index, evaluate, promote)
