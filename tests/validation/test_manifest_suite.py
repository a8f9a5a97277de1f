"""Every expectation of the manifest suites fails on a manifest that breaks it, and says which."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dinoflow.data.manifest import build_manifest
from dinoflow.validation.manifest_suite import validate_manifest


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
