"""Great Expectations suites for the image manifest (the only module that imports GX).

Each suite runs through its own checkpoint (each validates a different frame), and every
checkpoint updates the data docs site:

- ``manifest_suite`` on every row: schema, unique paths, well-formed hashes, known splits, and
  the share of broken files under a threshold (``is_ok`` is empty for exact duplicates: they are
  dropped and counted on their own, so the share is over the distinct files);
- ``clean_suite`` on the rows kept for training: decodable, unique content, size bounds and
  known modes and formats;
- ``class_balance_suite`` (labelled data) on the class counts: no class more than
  ``max_class_imbalance`` times the smallest.

Every rule has words (``RULES``): a failed rule is reported as what it checks, the observed value,
the allowed range and the parameter that sets it (or what to do when no parameter does).
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from dinoflow.data.decode import SIXTEEN_BIT_MODES
from dinoflow.data.manifest import is_duplicate, quarantine_summary

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
# GX imports altair, which imports jsonschema, which imports rfc3987_syntax when it is installed (the
# notebooks' Jupyter server pulls it in) only to check the "iri" string format, and that module builds
# its grammar on import: a second of every validation, for a format no suite here checks. None in
# sys.modules makes that optional import fail as if the package were absent.
sys.modules.setdefault("rfc3987_syntax", None)

import great_expectations as gx  # noqa: E402
import great_expectations.expectations as gxe  # noqa: E402

MANIFEST_COLUMNS = [
    "path", "sha256", "bytes", "mtime_ns", "format", "width", "height", "mode", "decodable", "exif_orientation",
    "label", "mask_path", "split", "status", "note", "pixel_std",
]  # fmt: skip
ALLOWED_FORMATS = ["PNG", "JPEG", "MPO", "GIF", "BMP", "WEBP", "TIFF"]
# Modes that dinoflow.data.decode.to_rgb turns into RGB faithfully.
ALLOWED_MODES = ["RGB", "RGBA", "L", "LA", "P", "PA", "CMYK", "YCbCr", "1", *SIXTEEN_BIT_MODES]

_CLASS_BALANCE = "class_balance_suite: expect_column_values_to_be_between times_smallest"
_BROKEN_SHARE = "manifest_suite: expect_column_mean_to_be_between is_ok"
_REBUILD = "no parameter: the manifest is damaged or from another dinoflow version; re-run data_ingestion"


@dataclass(frozen=True)
class Rule:
    """A rule in words: ``what`` it checks, the ``allowed`` range (``str.format`` fields: the
    ``validate_manifest`` limits) and the ``setting`` that sets it, or what to do when none does."""

    what: str
    allowed: str
    setting: str


RULES = {
    "manifest_suite: expect_table_columns_to_match_set": Rule(
        "manifest columns", "exactly the manifest schema of this dinoflow version", _REBUILD
    ),
    "manifest_suite: expect_table_row_count_to_be_between": Rule(
        "images found", "at least 1", "data.source: the folder scanned for images"
    ),
    "manifest_suite: expect_column_values_to_not_be_null path": Rule("manifest rows without a path", "none", _REBUILD),
    "manifest_suite: expect_column_values_to_be_unique path": Rule("manifest paths listed twice", "none", _REBUILD),
    "manifest_suite: expect_column_values_to_be_in_set split": Rule(
        "rows with an unknown split", "train or val (from train/ and val/ folders or data.val_ratio)", _REBUILD
    ),
    _BROKEN_SHARE: Rule("broken files", "at most {max_quarantine_share:.1%}", "validation.max_quarantine_share"),
    "clean_suite: expect_table_row_count_to_be_between": Rule(
        "images kept for training",
        "at least 1",
        "every file was quarantined: see the reasons (data.min_size, data.max_pixels and data.min_pixel_std set some)",
    ),
    "clean_suite: expect_column_values_to_be_in_set decodable": Rule(
        "kept images that do not decode", "none", _REBUILD
    ),
    "clean_suite: expect_column_values_to_match_regex sha256": Rule(
        "kept images with a malformed sha256", "none (64 hex digits)", _REBUILD
    ),
    "clean_suite: expect_column_values_to_be_unique sha256": Rule(
        "kept images with the same content", "none (exact copies are dropped at ingestion)", _REBUILD
    ),
    "clean_suite: expect_column_values_to_be_between bytes": Rule("empty kept files", "none", _REBUILD),
    "clean_suite: expect_column_values_to_be_between width": Rule(
        "kept images narrower than the minimum", "none: width at least {min_size} px", "data.min_size"
    ),
    "clean_suite: expect_column_values_to_be_between height": Rule(
        "kept images lower than the minimum", "none: height at least {min_size} px", "data.min_size"
    ),
    "clean_suite: expect_column_values_to_be_in_set mode": Rule(
        "kept images in a mode dinoflow cannot convert to RGB",
        "none: " + ", ".join(ALLOWED_MODES),
        "no parameter: convert these files or remove them from the folder",
    ),
    "clean_suite: expect_column_values_to_be_in_set format": Rule(
        "kept images in an unsupported file format",
        "none: " + ", ".join(ALLOWED_FORMATS),
        "no parameter: convert these files or remove them from the folder",
    ),
    _CLASS_BALANCE: Rule(
        "class balance",
        "largest class at most {max_class_imbalance:g} times the smallest",
        "validation.max_class_imbalance",
    ),
}

logging.getLogger("great_expectations").setLevel(logging.WARNING)


def _manifest_suite(max_quarantine_share: float) -> gx.ExpectationSuite:
    suite = gx.ExpectationSuite(name="manifest_suite")
    for expectation in [
        gxe.ExpectTableColumnsToMatchSet(column_set=MANIFEST_COLUMNS + ["is_ok"], exact_match=True),
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
        gxe.ExpectColumnValuesToNotBeNull(column="path"),
        gxe.ExpectColumnValuesToBeUnique(column="path"),
        gxe.ExpectColumnValuesToBeInSet(column="split", value_set=["train", "val"]),
        gxe.ExpectColumnMeanToBeBetween(column="is_ok", min_value=1.0 - max_quarantine_share),
    ]:
        suite.add_expectation(expectation)
    return suite


def _clean_suite(min_size: int) -> gx.ExpectationSuite:
    suite = gx.ExpectationSuite(name="clean_suite")
    for expectation in [
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
        gxe.ExpectColumnValuesToBeInSet(column="decodable", value_set=[True]),
        gxe.ExpectColumnValuesToMatchRegex(column="sha256", regex=r"^[0-9a-f]{64}$"),
        gxe.ExpectColumnValuesToBeUnique(column="sha256"),
        gxe.ExpectColumnValuesToBeBetween(column="bytes", min_value=1),
        gxe.ExpectColumnValuesToBeBetween(column="width", min_value=min_size),
        gxe.ExpectColumnValuesToBeBetween(column="height", min_value=min_size),
        gxe.ExpectColumnValuesToBeInSet(column="mode", value_set=ALLOWED_MODES),
        gxe.ExpectColumnValuesToBeInSet(column="format", value_set=ALLOWED_FORMATS),
    ]:
        suite.add_expectation(expectation)
    return suite


def _class_balance_suite(max_class_imbalance: float) -> gx.ExpectationSuite:
    suite = gx.ExpectationSuite(name="class_balance_suite")
    suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(column="times_smallest", max_value=max_class_imbalance))
    return suite


def class_counts(clean: pd.DataFrame) -> pd.DataFrame:
    """One row per label of the kept rows: count and count / smallest class's count."""
    counts = clean[clean["label"] != ""].groupby("label").size().rename("count").reset_index()
    return counts.assign(times_smallest=counts["count"] / max(int(counts["count"].min()) if len(counts) else 1, 1))


def _images(count: int) -> str:
    return f"{int(count)} image" + ("" if int(count) == 1 else "s")


def class_balance_message(counts: pd.DataFrame, max_class_imbalance: float) -> str:
    """The class-balance rule in words: smallest and largest classes with counts, the observed
    ratio, the limit and the parameters that change the outcome."""
    ranked = counts.sort_values(["count", "label"])
    smallest, largest = ranked.iloc[0], ranked.iloc[-1]
    ratio = largest["count"] / max(int(smallest["count"]), 1)
    message = (
        f"class balance: the largest class {largest['label']!r} has {_images(largest['count'])}, "
        f"{ratio:.1f} times the smallest {smallest['label']!r} ({_images(smallest['count'])}), over "
        f"{len(counts)} classes; allowed at most {max_class_imbalance:g} times (validation.max_class_imbalance)"
    )
    if counts["label"].str.contains("/").any():
        message += "; the labels are nested folders: data.label_depth sets how many levels make a label"
    return message


def _observed(result: dict[str, Any]) -> str:
    """What a GX result saw, in words: unexpected rows with examples, or the observed value."""
    if "unexpected_count" in result:
        values = [value for value in result.get("partial_unexpected_list", []) if not pd.isna(value)]
        seen = list(dict.fromkeys(map(str, values)))
        examples = ", ".join(repr(value) for value in seen[:3])
        return f"{result['unexpected_count']} of {result['element_count']} rows" + (
            f" (e.g. {examples})" if examples else ""
        )
    mismatched = result.get("details", {}).get("mismatched")
    if mismatched:
        kinds = {"unexpected": "extra columns", "missing": "missing columns"}
        return "; ".join(f"{kinds.get(k, k)} {', '.join(map(str, names))}" for k, names in mismatched.items() if names)
    return str(result.get("observed_value", "unknown"))


def broken_share_message(manifest_frame: pd.DataFrame, max_quarantine_share: float) -> str:
    """The broken-file share in words (exact duplicates are not counted: ``is_ok`` is empty for them)."""
    distinct = manifest_frame["is_ok"].dropna()
    if distinct.empty:
        return "broken files: no file to measure the share on (no image was found)"
    broken = int((distinct == 0).sum())
    share = broken / max(len(distinct), 1)
    return (
        f"broken files: {broken} of {len(distinct)} distinct files were quarantined ({share:.1%}); allowed at most "
        f"{max_quarantine_share:.1%} (validation.max_quarantine_share)"
    )


def rule_message(rule: str, result: dict[str, Any], limits: dict[str, Any]) -> str:
    """A failed rule in words: what it checks, the observed value, the allowed range, its setting."""
    words = RULES.get(rule)
    if words is None:  # a rule added without words still says what GX saw
        return f"{rule}: observed {_observed(result)}"
    return f"{words.what}: observed {_observed(result)}; allowed {words.allowed.format(**limits)} ({words.setting})"


def quarantine_reasons(manifest: pd.DataFrame) -> dict[str, int]:
    """Quarantine reason -> number of files, most frequent first (``duplicate`` for exact copies)."""
    return {reason: count for reason, count, _ in quarantine_summary(manifest.to_dict("records"), examples=0)}


def _asset(source, name: str):
    try:
        return source.get_asset(name)
    except LookupError:
        return source.add_dataframe_asset(name)


def validate_manifest(
    manifest: pd.DataFrame,
    min_size: int,
    max_quarantine_share: float,
    max_class_imbalance: float,
    docs_root: Path,
) -> dict:
    """Run the suites through GX checkpoints and build the data docs site under ``docs_root``.

    Returns:
        ``{"success", "failed": [suite: expectation column], "messages": [each failed rule in words],
        "statistics", "quarantine_reasons": {reason: count}, "result": <GX JSON>, "data_docs": <path
        of the docs site's index.html>}``.
    """
    context = gx.get_context(mode="file", project_root_dir=str(docs_root))
    source = context.data_sources.add_or_update_pandas("manifest_source")
    clean = manifest[manifest["status"] == "ok"]
    duplicates = manifest["status"].map(is_duplicate).astype(bool)
    frames = {
        "manifest_suite": manifest.assign(is_ok=(manifest["status"] == "ok").astype(float).mask(duplicates)),
        "clean_suite": clean,
    }
    suites = {
        "manifest_suite": _manifest_suite(max_quarantine_share),
        "clean_suite": _clean_suite(min_size),
    }
    if (clean["label"] != "").any():  # class balance only means something for labelled data
        frames["class_balance_suite"] = class_counts(clean)
        suites["class_balance_suite"] = _class_balance_suite(max_class_imbalance)
    limits = {"min_size": min_size, "max_quarantine_share": max_quarantine_share,
              "max_class_imbalance": max_class_imbalance}  # fmt: skip
    results, failed, messages = {}, [], {}
    for name, frame in frames.items():
        batch_definition = _asset(source, name).add_batch_definition_whole_dataframe(f"{name}_all")
        suite = context.suites.add_or_update(suites[name])
        definition = context.validation_definitions.add_or_update(
            gx.ValidationDefinition(name=f"{name}_definition", data=batch_definition, suite=suite)
        )
        checkpoint = context.checkpoints.add_or_update(
            gx.Checkpoint(
                name=f"{name}_checkpoint",
                validation_definitions=[definition],
                actions=[gx.checkpoint.UpdateDataDocsAction(name="update_data_docs")],
                result_format="SUMMARY",
            )
        )
        outcome = checkpoint.run(batch_parameters={"dataframe": frame})
        for run_result in outcome.run_results.values():
            results[name] = run_result.describe_dict()
            for r in run_result.results:
                rule = f"{name}: {r.expectation_config.type} {r.expectation_config.kwargs.get('column', '')}".strip()
                if not r.success:
                    failed.append(rule)
                    messages[rule] = rule_message(rule, r.result, limits)
    if _BROKEN_SHARE in messages:
        messages[_BROKEN_SHARE] = broken_share_message(frames["manifest_suite"], max_quarantine_share)
    if _CLASS_BALANCE in messages:
        messages[_CLASS_BALANCE] = class_balance_message(frames["class_balance_suite"], max_class_imbalance)
    return {
        "success": not failed,
        "failed": failed,
        "messages": [messages[rule] for rule in failed],
        "statistics": {
            "rows": len(manifest),
            "ok": int(len(clean)),
            "quarantined": int(len(manifest) - len(clean) - duplicates.sum()),  # broken files
            "duplicates": int(duplicates.sum()),  # exact copies dropped (not broken)
        },
        "quarantine_reasons": quarantine_reasons(manifest),
        "result": results,
        "data_docs": str(Path(docs_root) / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"),
    }
