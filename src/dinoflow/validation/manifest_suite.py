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
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pandas as pd

from dinoflow.data.decode import SIXTEEN_BIT_MODES
from dinoflow.data.manifest import is_duplicate

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

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
        ``{"success", "failed": [suite: expectation column], "messages": [the failed rules, in words
        where the rule has them], "statistics", "result": <GX JSON>, "data_docs": <path of the docs
        site's index.html>}``.
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
    results, failed = {}, []
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
            failed += [
                f"{name}: {r.expectation_config.type} {r.expectation_config.kwargs.get('column', '')}".strip()
                for r in run_result.results
                if not r.success
            ]
    words = {}
    if "class_balance_suite" in frames:
        words[_CLASS_BALANCE] = class_balance_message(frames["class_balance_suite"], max_class_imbalance)
    return {
        "success": not failed,
        "failed": failed,
        "messages": [words.get(rule, rule) for rule in failed],
        "statistics": {
            "rows": len(manifest),
            "ok": int(len(clean)),
            "quarantined": int(len(manifest) - len(clean) - duplicates.sum()),  # broken files
            "duplicates": int(duplicates.sum()),  # exact copies dropped (not broken)
        },
        "result": results,
        "data_docs": str(Path(docs_root) / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"),
    }
