"""Project pipelines; ``__default__`` is the whole flow from raw images to a promoted model."""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

DEFAULT_FLOW = ("data_ingestion", "data_validation", "curate", "dataset", "pretrain", "evaluate", "register", "promote")
# Registered too, run by name only: tune, and embed (`kedro run --pipeline embed --params embed.source=...`).


def register_pipelines() -> dict[str, Pipeline]:
    pipelines = find_pipelines(raise_errors=True)
    # `kedro run --pipelines a,b` imports only the pipelines it names, so some may be absent.
    pipelines["__default__"] = sum((pipelines[n] for n in DEFAULT_FLOW if n in pipelines), Pipeline([]))
    return pipelines
