"""Project pipelines; ``__default__`` is the whole flow from raw images to a registered model."""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

DEFAULT_FLOW = ("data_ingestion", "data_validation", "dataset", "pretrain", "evaluate", "register")


def register_pipelines() -> dict[str, Pipeline]:
    pipelines = find_pipelines(raise_errors=True)
    pipelines["__default__"] = sum((pipelines[name] for name in DEFAULT_FLOW), Pipeline([]))
    return pipelines
