"""A run's results in words: the lines of the summary printed at the end of a run, which the nodes
also write, as they produce each result, into the MLflow run's description (``mlflow.note.content``).

Pure formatting of the nodes' plain outputs (the evaluation metrics, the registration record, the
promotion record); no tracking or orchestration library.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

NAN = float("nan")


def pretrain_line(preset: str, data_name: str, config_hash: str, summary: Mapping[str, Any]) -> str:
    """What was trained, on what, and how it ended (``summary`` is the training's summary.json)."""
    loss = summary.get("loss", NAN)
    return (
        f"Pretrained preset {preset} on {data_name} (config {config_hash[:6]}): "
        f"{summary.get('iterations', '?')} iterations, final loss {loss:.3f}"
    )


def evaluation_lines(m: Mapping[str, float], k: int, temperature: float) -> list[str]:
    """k-NN (``k`` neighbours, ``temperature``: ``evaluate.knn_k``, ``evaluate.knn_temperature``) and
    linear probe (and segmentation when measured) against their baselines."""
    lines = [
        f"k-NN top-1 (k={k}, T={temperature:g}) on val: "
        f"trained {m.get('knn_top1', NAN):.3f} | random init {m.get('knn_top1_random_init', NAN):.3f} "
        f"| raw pixels {m.get('knn_top1_raw_pixels', NAN):.3f}",
        f"Linear probe top-1 (best of the grid): trained {m.get('linear_top1', NAN):.3f} "
        f"| random init {m.get('linear_top1_random_init', NAN):.3f}",
    ]
    if "seg_miou" in m:
        lines.append(
            f"Segmentation mIoU (linear, patch + CLS tokens): trained {m['seg_miou']:.3f} "
            f"| random init {m['seg_miou_random_init']:.3f} | background everywhere {m['seg_miou_majority']:.3f}"
        )
    return lines


def registration_line(r: Mapping[str, Any]) -> str:
    return f"Registered model: {r['name']} version {r['version']} alias @{r['alias']} → {r['model_uri']}"


def promotion_lines(p: Mapping[str, Any]) -> list[str]:
    """The decision and each gate's reason."""
    champion = f"@champion is v{p['champion']}" if p.get("champion") else "no @champion yet"
    head = f"Promotion: v{p['challenger']} {p['decision']} -> {champion}"
    return [head] + [f"  - {reason}" for reason in p.get("reasons", [])]
