"""The configuration reference, generated from the schemas themselves (each field's type, default
and ``Field(description=...)``), so the README's copy cannot drift: a test compares them.

    python -m dinoflow.config.reference     # prints the Markdown
"""

from __future__ import annotations

import sys

from pydantic import BaseModel

from dinoflow.config import pipeline_params as pp
from dinoflow.config.schema import PretrainConfig

PIPELINE_SECTIONS = {
    "data": pp.DataParams, "validation": pp.ValidationParams, "curation": pp.CurationParams, "dataset": pp.DatasetParams,
    "evaluate": pp.EvaluateParams, "register": pp.RegisterParams, "promote": pp.PromoteParams,
    "tune": pp.TuneParams, "pretrain_launcher": pp.LauncherParams, "pretrain_tuned": pp.TunedParams,
    "embed": pp.EmbedParams,
}  # fmt: skip


def _type_name(annotation) -> str:
    text = getattr(annotation, "__name__", None) if not getattr(annotation, "__args__", None) else None
    return (text or str(annotation)).replace("typing.", "").replace("NoneType", "None")


def _rows(model: type[BaseModel], prefix: str) -> list[str]:
    rows = []
    for name, field in model.model_fields.items():
        key = f"{prefix}.{name}"
        nested = (
            field.annotation if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel) else None
        )
        if nested is not None:
            rows += _rows(nested, key)
            continue
        default = "required" if field.is_required() else f"`{field.get_default(call_default_factory=True)!r}`"
        description = (field.description or "").replace("|", "\\|")
        type_name = _type_name(field.annotation).replace("|", "\\|")
        rows.append(f"| `{key}` | `{type_name}` | {default.replace('|', chr(92) + '|')} | {description} |")
    return rows


def reference_markdown() -> str:
    header = ["| key | type | default | meaning |", "|---|---|---|---|"]
    lines = ["#### Training (`pretrain.*`, also `python -m dinoflow.train ... key=value`)", "", *header]
    lines += _rows(PretrainConfig, "pretrain")
    lines += ["", "#### Pipelines", "", *header]
    for section, model in PIPELINE_SECTIONS.items():
        lines += _rows(model, section)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(reference_markdown())
