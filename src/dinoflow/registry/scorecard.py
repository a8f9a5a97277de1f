"""Markdown descriptions of registered backbones, for people (tags stay for machines).

Pure formatting of a model version's tags (the ones the register and promote pipelines set):
the version's scorecard (k-NN and linear probe against random init and raw pixels, the data, the
gate decision with its reasons, the lineage) and the registered model's overview.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

# Rows of the scorecard: label, the version's metric tag, its random-init twin, the baseline.
_ROWS = (
    ("k-NN top-1", "knn_top1", "knn_top1_random_init", ("raw pixels", "knn_top1_raw_pixels")),
    ("linear probe top-1", "linear_top1", "linear_top1_random_init", None),
    ("segmentation mIoU", "seg_miou", "seg_miou_random_init", ("background everywhere", "seg_miou_majority")),
)


def _figure(tags: Mapping[str, str], name: str) -> str:
    value = tags.get(f"metric.{name}")
    return f"{float(value):.3f}" if value is not None else "–"


def _score_table(tags: Mapping[str, str]) -> list[str]:
    lines = ["| | trained | random init | baseline |", "|---|---|---|---|"]
    for label, ours, random_init, baseline in _ROWS:
        if f"metric.{ours}" not in tags:
            continue
        base = f"{baseline[0]} {_figure(tags, baseline[1])}" if baseline else "–"
        lines.append(f"| {label} | **{_figure(tags, ours)}** | {_figure(tags, random_init)} | {base} |")
    return lines


def _data_line(tags: Mapping[str, str]) -> str:
    root = tags.get("data_root", "unknown")
    return (
        f"**Data**: {Path(root).name} (`{root}`), DVC md5 `{tags.get('data_dvc_md5', 'untracked')}`, "
        f"fingerprint `{tags.get('data_fingerprint', 'unknown')[:12]}`; "
        f"data validation {tags.get('validation_status', 'unknown')}."
    )


def _gate_lines(tags: Mapping[str, str]) -> list[str]:
    decision = tags.get("promotion.decision")
    if decision is None:
        return ["**Gate**: not decided yet (the promote pipeline decides and explains)."]
    compared = tags.get("promotion.compared_with", "unknown")
    against = f"compared with v{compared}" if compared.isdigit() else "first promotion, no champion before"
    head = f"**Gate**: {decision} ({against}):"
    reasons = [r for r in tags.get("promotion.reasons", "").split("; ") if r]
    rolled_back = [f"**Rolled back**: {tags['promotion.rolled_back']}."] if "promotion.rolled_back" in tags else []
    return [head, "", *(f"- {reason}" for reason in reasons), *([""] + rolled_back if rolled_back else [])]


def _lineage_line(tags: Mapping[str, str]) -> str:
    collapsed = "raised" if tags.get("collapsed") == "true" else "not raised"
    parent = f"warm-started from `{tags['parent_model_version']}`, " if "parent_model_version" in tags else ""
    parent += f"distilled from `{tags['distilled_from']}`, " if "distilled_from" in tags else ""
    return (
        f"**Lineage**: {parent}run `{tags.get('run_id', 'unknown')}`, git `{tags.get('git_sha', 'unknown')[:10]}`, "
        f"config `{tags.get('config_hash', 'unknown')}`, evaluation protocol `{tags.get('evaluation_protocol', '?')}`; "
        f"collapse flag {collapsed}; ONNX export max abs diff {tags.get('onnx_max_abs_diff', '?')}."
    )


def version_description(model_name: str, version: str, tags: Mapping[str, str]) -> str:
    """The scorecard of ``model_name`` v``version`` from its tags (markdown)."""
    preset = f" (preset {tags['preset']})" if "preset" in tags else ""
    return "\n".join([
        f"### {model_name} v{version}{preset}",
        "",
        *_score_table(tags),
        "",
        _data_line(tags),
        "",
        *_gate_lines(tags),
        "",
        _lineage_line(tags),
    ])  # fmt: skip


def model_description(
    model_name: str, aliases: Mapping[str, str], tags_by_version: Mapping[str, Mapping[str, str]]
) -> str:
    """The registered model's overview: what it is, how to load it, where each alias points."""
    lines = [
        f"DINO-pretrained ViT backbone trained by dinoflow: images in, teacher CLS embeddings out. "
        f'Load with `mlflow.pytorch.load_model("models:/{model_name}@champion")`; each version\'s '
        "description is its scorecard.",
        "",
    ]
    for alias, version in sorted(aliases.items()):
        tags = tags_by_version.get(version, {})
        lines.append(
            f"- **@{alias}** → v{version}: k-NN top-1 {_figure(tags, 'knn_top1')} "
            f"(random init {_figure(tags, 'knn_top1_random_init')}, raw pixels {_figure(tags, 'knn_top1_raw_pixels')})"
            f", gate {tags.get('promotion.decision', 'not decided')}"
        )
    return "\n".join(lines)
