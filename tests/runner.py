"""Kedro's runner as ``kedro run`` drives it, on an in-memory catalog: with the run-page hook, so
what the nodes produce reaches the active MLflow run as it does in a project run."""

from __future__ import annotations

from typing import Any

from kedro.framework.hooks.manager import _create_hook_manager
from kedro.io import DataCatalog
from kedro.pipeline import Pipeline
from kedro.runner import SequentialRunner

from dinoflow.hooks import RunPageHook


def run_pipeline(pipeline: Pipeline, catalog: DataCatalog, *hooks: Any) -> dict[str, Any]:
    """``SequentialRunner().run`` with ``RunPageHook`` and ``hooks`` registered; the free outputs."""
    manager = _create_hook_manager()
    for hook in (RunPageHook(), *hooks):
        manager.register(hook)
    return SequentialRunner().run(pipeline, catalog, manager)


def pretrain(dataset_index, pretrain_params: dict, presets: dict, launcher) -> tuple[Any, Any]:
    """The pretrain pipeline (plan, then train) on these inputs: ``(pretrain_result, training_curve)``."""
    from dinoflow.config.pipeline_params import TunedParams
    from dinoflow.datasets import OptionalYAMLDataset
    from dinoflow.pipelines.pretrain import create_pipeline

    catalog = DataCatalog()
    inputs = {"dataset_index": dataset_index, "params:pretrain": pretrain_params, "params:pretrain_presets": presets,
              "params:pretrain_launcher": launcher, "params:pretrain_tuned": TunedParams(use=False),
              "tuned_pretrain": OptionalYAMLDataset(filepath=f"{launcher.output_root}/.no-tuning.yml")}  # fmt: skip
    for name, value in inputs.items():
        catalog[name] = value
    outputs = run_pipeline(create_pipeline(), catalog)
    return outputs["pretrain_result"].load(), outputs["training_curve"].load()
