"""Every expectation of the manifest suites fails on a manifest that breaks it, and says which."""

import re

import great_expectations as gx
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dinoflow.data.manifest import build_manifest
from dinoflow.validation.manifest_suite import (
    RULES,
    _class_balance_suite,
    _clean_suite,
    _manifest_suite,
    validate_manifest,
)


@pytest.fixture(scope="module")
def clean_manifest(tiny_dataset_root) -> pd.DataFrame:
    return pd.DataFrame(build_manifest(tiny_dataset_root, workers=1, progress=False))


def run(manifest, tmp_path, **overrides):
    args = {"min_size": 16, "max_quarantine_share": 0.05, "max_class_imbalance": 3.0, "docs_root": tmp_path}
    return validate_manifest(manifest, **{**args, **overrides})


def test_a_clean_manifest_passes_and_builds_data_docs(clean_manifest, tmp_path):
    report = run(clean_manifest, tmp_path)
    assert report["success"], report["failed"]
    assert set(report["result"]) == {"manifest_suite", "clean_suite", "class_balance_suite"}
    assert (tmp_path / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html").is_file()


def _set(column, value, rows=slice(0, 1)):
    def mutate(df):
        df = df.copy()
        df.loc[df.index[rows], column] = value
        return df

    return mutate


BREAKS = {
    "manifest_suite: expect_table_columns_to_match_set": lambda df: df.assign(extra=1),
    "manifest_suite: expect_column_values_to_be_unique path": _set("path", "same.png", slice(0, 2)),
    "manifest_suite: expect_column_values_to_be_in_set split": _set("split", "test"),
    "manifest_suite: expect_column_mean_to_be_between is_ok": _set("status", "not decodable: x", slice(0, 10)),
    "clean_suite: expect_column_values_to_be_in_set decodable": _set("decodable", False),
    "clean_suite: expect_column_values_to_be_unique sha256": _set("sha256", "a" * 64, slice(0, 2)),
    "clean_suite: expect_column_values_to_match_regex sha256": _set("sha256", "not-a-hash"),
    "clean_suite: expect_column_values_to_be_between width": _set("width", 4),
    "clean_suite: expect_column_values_to_be_in_set mode": _set("mode", "F"),
    "clean_suite: expect_column_values_to_be_in_set format": _set("format", "XCF"),
    "class_balance_suite: expect_column_values_to_be_between times_smallest": lambda df: df[
        (df["label"] != df["label"].iloc[0]) | (df.index < df.index[0] + 4)
    ],
}


@pytest.mark.parametrize("rule", list(BREAKS))
def test_each_rule_fails_when_broken_and_is_named(clean_manifest, tmp_path, rule):
    report = run(BREAKS[rule](clean_manifest), tmp_path)
    assert not report["success"]
    assert rule in report["failed"], report["failed"]


def test_an_empty_manifest_fails_on_row_count(clean_manifest, tmp_path):
    report = run(clean_manifest.iloc[0:0], tmp_path)
    assert "manifest_suite: expect_table_row_count_to_be_between" in report["failed"]


def _folder_with_copies(root, distinct: int, copies: int, broken: int) -> pd.DataFrame:
    """Real files: ``distinct`` noise images in two classes, ``copies`` exact duplicates of them,
    ``broken`` text files named .png."""
    rng = np.random.default_rng(0)
    for i in range(distinct):
        folder = root / ("cats" if i % 2 else "dogs")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    for i in range(copies):
        source = root / ("cats" if i % 2 else "dogs") / f"{i:02d}.png"
        (source.parent / f"copy{i:02d}.png").write_bytes(source.read_bytes())
    for i in range(broken):
        (root / "cats" / f"broken{i}.png").write_text("not a png")
    return pd.DataFrame(build_manifest(root, workers=1, progress=False))


def test_duplicates_are_counted_on_their_own_and_not_as_broken(tmp_path):
    manifest = _folder_with_copies(tmp_path / "data", distinct=20, copies=10, broken=0)  # a third are copies
    report = run(manifest, tmp_path / "docs")
    assert report["success"], report["failed"]
    assert report["statistics"] == {"rows": 30, "ok": 20, "quarantined": 0, "duplicates": 10}


def test_the_broken_share_is_over_distinct_files(tmp_path):
    # 2 broken of 32 distinct files is 6.25% > 5% (it would be 3.8% if the 20 copies counted).
    manifest = _folder_with_copies(tmp_path / "data", distinct=30, copies=20, broken=2)
    report = run(manifest, tmp_path / "docs")
    assert "manifest_suite: expect_column_mean_to_be_between is_ok" in report["failed"]
    assert report["statistics"] == {"rows": 52, "ok": 30, "quarantined": 2, "duplicates": 20}


def _nested_tree(root) -> pd.DataFrame:
    """Real files: animals/{mammals: 12, birds: 9}, plants/{trees: 2, grass: 1}."""
    rng = np.random.default_rng(1)
    for folder, count in {"animals/mammals": 12, "animals/birds": 9, "plants/trees": 2, "plants/grass": 1}.items():
        (root / folder).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(root / folder / f"{i}.png")
    return root


def test_the_class_balance_message_names_the_smallest_and_largest_classes(tmp_path):
    root = _nested_tree(tmp_path / "data")
    report = run(pd.DataFrame(build_manifest(root, workers=1, progress=False)), tmp_path / "docs")
    assert "class_balance_suite: expect_column_values_to_be_between times_smallest" in report["failed"]
    assert report["messages"] == [
        "class balance: the largest class 'animals/mammals' has 12 images, 12.0 times the smallest "
        "'plants/grass' (1 image), over 4 classes; allowed at most 3 times (validation.max_class_imbalance); "
        "the labels are nested folders: data.label_depth sets how many levels make a label"
    ]
    shallow = pd.DataFrame(build_manifest(root, workers=1, progress=False, label_depth=1))
    report = run(shallow, tmp_path / "docs")  # animals 21, plants 3: 7 times
    assert report["messages"] == [
        "class balance: the largest class 'animals' has 21 images, 7.0 times the smallest 'plants' (3 images), "
        "over 2 classes; allowed at most 3 times (validation.max_class_imbalance)"
    ]
    assert run(shallow, tmp_path / "docs", max_class_imbalance=7.0)["success"]


_DAMAGED = r"\(no parameter: the manifest is damaged or from another dinoflow version; re-run data_ingestion\)"
# Every rule: how to break it, and its stop message in words (observed value, allowed range, setting).
IN_WORDS = {
    "manifest_suite: expect_table_columns_to_match_set": (
        BREAKS["manifest_suite: expect_table_columns_to_match_set"],
        r"^manifest columns: observed extra columns extra; allowed exactly the manifest schema of this dinoflow "
        r"version " + _DAMAGED,
    ),
    "manifest_suite: expect_table_row_count_to_be_between": (
        lambda df: df.iloc[0:0],
        r"^images found: observed 0; allowed at least 1 \(data.source: the folder scanned for images\)$",
    ),
    "manifest_suite: expect_column_values_to_not_be_null path": (
        _set("path", None),
        r"^manifest rows without a path: observed 1 of 72 rows; allowed none " + _DAMAGED,
    ),
    "manifest_suite: expect_column_values_to_be_unique path": (
        BREAKS["manifest_suite: expect_column_values_to_be_unique path"],
        r"^manifest paths listed twice: observed 2 of 72 rows \(e.g. 'same.png'\); allowed none " + _DAMAGED,
    ),
    "manifest_suite: expect_column_values_to_be_in_set split": (
        BREAKS["manifest_suite: expect_column_values_to_be_in_set split"],
        r"^rows with an unknown split: observed 1 of 72 rows \(e.g. 'test'\); allowed train or val \(from train/ "
        r"and val/ folders or data.val_ratio\) " + _DAMAGED,
    ),
    "manifest_suite: expect_column_mean_to_be_between is_ok": (
        BREAKS["manifest_suite: expect_column_mean_to_be_between is_ok"],
        r"^broken files: 10 of 72 distinct files were quarantined \(13.9%\); allowed at most 5.0% "
        r"\(validation.max_quarantine_share\)$",
    ),
    "clean_suite: expect_table_row_count_to_be_between": (
        _set("status", "too small: 4x4", slice(None)),
        r"^images kept for training: observed 0; allowed at least 1 \(every file was quarantined: see the "
        r"reasons \(data.min_size, data.max_pixels and data.min_pixel_std set some\)\)$",
    ),
    "clean_suite: expect_column_values_to_be_in_set decodable": (
        BREAKS["clean_suite: expect_column_values_to_be_in_set decodable"],
        r"^kept images that do not decode: observed 1 of 72 rows \(e.g. 'False'\); allowed none " + _DAMAGED,
    ),
    "clean_suite: expect_column_values_to_match_regex sha256": (
        BREAKS["clean_suite: expect_column_values_to_match_regex sha256"],
        r"^kept images with a malformed sha256: observed 1 of 72 rows \(e.g. 'not-a-hash'\); allowed none "
        r"\(64 hex digits\) " + _DAMAGED,
    ),
    "clean_suite: expect_column_values_to_be_unique sha256": (
        BREAKS["clean_suite: expect_column_values_to_be_unique sha256"],
        r"^kept images with the same content: observed 2 of 72 rows \(e.g. 'a{64}'\); allowed none \(exact "
        r"copies are dropped at ingestion\) " + _DAMAGED,
    ),
    "clean_suite: expect_column_values_to_be_between bytes": (
        _set("bytes", 0),
        r"^empty kept files: observed 1 of 72 rows \(e.g. '0'\); allowed none " + _DAMAGED,
    ),
    "clean_suite: expect_column_values_to_be_between width": (
        BREAKS["clean_suite: expect_column_values_to_be_between width"],
        r"^kept images narrower than the minimum: observed 1 of 72 rows \(e.g. '4'\); allowed none: width at "
        r"least 16 px \(data.min_size\)$",
    ),
    "clean_suite: expect_column_values_to_be_between height": (
        _set("height", 4),
        r"^kept images lower than the minimum: observed 1 of 72 rows \(e.g. '4'\); allowed none: height at "
        r"least 16 px \(data.min_size\)$",
    ),
    "clean_suite: expect_column_values_to_be_in_set mode": (
        BREAKS["clean_suite: expect_column_values_to_be_in_set mode"],
        r"^kept images in a mode dinoflow cannot convert to RGB: observed 1 of 72 rows \(e.g. 'F'\); allowed "
        r"none: RGB, RGBA, .* \(no parameter: convert these files or remove them from the folder\)$",
    ),
    "clean_suite: expect_column_values_to_be_in_set format": (
        BREAKS["clean_suite: expect_column_values_to_be_in_set format"],
        r"^kept images in an unsupported file format: observed 1 of 72 rows \(e.g. 'XCF'\); allowed none: "
        r"PNG, JPEG, .* \(no parameter: convert these files or remove them from the folder\)$",
    ),
    "class_balance_suite: expect_column_values_to_be_between times_smallest": (
        BREAKS["class_balance_suite: expect_column_values_to_be_between times_smallest"],
        r"^class balance: the largest class '\w+' has 18 images, 4.5 times the smallest '\w+' \(4 images\), "
        r"over 4 classes; allowed at most 3 times \(validation.max_class_imbalance\)$",
    ),
}


def test_every_rule_of_the_suites_has_words_and_a_test():
    gx.get_context(mode="ephemeral")  # suites are built inside a context
    suites = [_manifest_suite(0.05), _clean_suite(16), _class_balance_suite(3.0)]
    rules = {
        f"{suite.name}: {e.expectation_type} {e.configuration.kwargs.get('column', '')}".strip()
        for suite in suites
        for e in suite.expectations
    }
    assert rules == set(RULES) == set(IN_WORDS)


@pytest.mark.parametrize("rule", sorted(IN_WORDS))
def test_each_failed_rule_is_reported_in_words(clean_manifest, tmp_path, rule):
    broken, words = IN_WORDS[rule]
    report = run(broken(clean_manifest), tmp_path)
    assert rule in report["failed"], report["failed"]
    message = report["messages"][report["failed"].index(rule)]
    assert re.search(words, message), message
