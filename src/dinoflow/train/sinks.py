"""Where training metrics go. The loop only knows the ``MetricsSink`` protocol.

Sinks that need an outside system live in the integration layer and are loaded by dotted
path, so this package imports no tracking library.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Protocol

# Named sinks from the integration layer, resolved lazily.
PLUGIN_SINKS = {"mlflow": "dinoflow.tracking.mlflow_sink:MlflowSink"}


class MetricsSink(Protocol):
    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...

    def close(self) -> None: ...


class JsonlSink:
    """Appends one JSON object per logging step; the local record of every run."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = open(self.path, "a", encoding="utf-8")

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self._handle.write(json.dumps({"step": step, **metrics}) + "\n")
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()


class FanOutSink:
    def __init__(self, sinks: list[MetricsSink]) -> None:
        self.sinks = sinks

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        for sink in self.sinks:
            sink.log_metrics(metrics, step)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()


def load_plugin_sink(name: str, output_dir: Path) -> MetricsSink:
    """Instantiate a named sink (``mlflow``) or any ``package.module:Class`` path; the class is
    called with the run's output directory (for anything it needs to keep on disk)."""
    spec = PLUGIN_SINKS.get(name, name)
    module_name, sep, attr = spec.partition(":")
    if not sep:
        raise ValueError(f"unknown metrics sink {name!r}; use one of {sorted(PLUGIN_SINKS)} or module:Class")
    return getattr(importlib.import_module(module_name), attr)(output_dir)
