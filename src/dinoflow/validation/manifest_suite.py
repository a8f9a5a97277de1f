"""Great Expectations suites for the image manifest (the only module that imports GX).

Two suites run through one checkpoint:

- ``manifest_suite`` on every row: schema, unique paths, well-formed hashes, known splits, and
  the share of quarantined rows under a threshold;
- ``clean_suite`` on the rows kept for training: decodable, unique content, size bounds and
  known modes.
"""

from __future__ import annotations

import logging
import os

import pandas as pd

from dinoflow.data.decode import SIXTEEN_BIT_MODES

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

import great_expectations as gx  # noqa: E402
import great_expectations.expectations as gxe  # noqa: E402

MANIFEST_COLUMNS = [
    "path", "sha256", "bytes", "format", "width", "height", "mode", "decodable", "exif_orientation",
    "label", "mask_path", "split", "status", "note",
]  # fmt: skip
# Modes that dinoflow.data.decode.to_rgb turns into RGB faithfully.
ALLOWED_MODES = ["RGB", "RGBA", "L", "LA", "P", "PA", "CMYK", "YCbCr", "1", *SIXTEEN_BIT_MODES]

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
    ]:
        suite.add_expectation(expectation)
    return suite


def validate_manifest(manifest: pd.DataFrame, min_size: int, max_quarantine_share: float) -> dict:
    """Run both suites through a GX checkpoint.

    Returns:
        ``{"success": bool, "failed": [descriptions], "statistics": {...}, "result": <GX JSON>}``.
    """
    context = gx.get_context(mode="ephemeral")
    source = context.data_sources.add_pandas("manifest_source")
    frames = {
        "manifest_suite": manifest.assign(is_ok=(manifest["status"] == "ok").astype(float)),
        "clean_suite": manifest[manifest["status"] == "ok"],
    }
    suites = {
        "manifest_suite": _manifest_suite(max_quarantine_share),
        "clean_suite": _clean_suite(min_size),
    }
    results, failed = {}, []
    for name, frame in frames.items():
        batch_definition = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe("all")
        suite = context.suites.add(suites[name])
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=f"{name}_definition", data=batch_definition, suite=suite)
        )
        checkpoint = context.checkpoints.add(
            gx.Checkpoint(
                name=f"{name}_checkpoint",
                validation_definitions=[definition],
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
    return {
        "success": not failed,
        "failed": failed,
        "statistics": {
            "rows": len(manifest),
            "ok": int((manifest["status"] == "ok").sum()),
            "quarantined": int((manifest["status"] != "ok").sum()),
        },
        "result": results,
    }
