"""Curation on real files with planted near-copies: what is removed, what is kept, the sampling's
effect and determinism. The detection targets (issue: >= 95% of copies, <= 1% of distinct images,
>= 95% of val copies) hold with the default settings on both planted folders, the generated
shapes and the demo data's own look (see benchmarks/curation.py for the same at scale)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dinoflow.curation.curate import NEAR_DUPLICATE, SAMPLED_OUT, VAL_NEAR_COPY, CurationSettings, curate
from dinoflow.curation.embeddings import pixel_embeddings
from dinoflow.data.manifest import build_manifest
from tests.planted import demo_look_folder


def embedded(planted: dict) -> tuple[pd.DataFrame, np.ndarray]:
    rows = [r for r in build_manifest(planted["root"], progress=False, workers=1) if r["status"] == "ok"]
    frame = pd.DataFrame(rows)
    return frame, pixel_embeddings([planted["root"] / p for p in frame["path"]], size=32, workers=1)


@pytest.fixture(scope="module")
def manifest_and_vectors(planted):
    return embedded(planted)


@pytest.fixture(scope="module", params=["generated shapes", "demo look"])
def detection_case(request, planted, tmp_path_factory):
    """(answer key, manifest, vectors) of each planted folder. On the demo look, grey thumbnails
    took 90 of the 600 distinct training images at 0.965, their default threshold (measured)."""
    if request.param == "generated shapes":
        return planted, *embedded(planted)
    folder = demo_look_folder(tmp_path_factory.mktemp("demo_look") / "folder")
    return folder, *embedded(folder)


def removed_paths(result, reason):
    return set(result.removed.loc[result.removed["reason"] == reason, "path"])


def test_planted_near_copies_go_and_distinct_images_stay(detection_case):
    planted, frame, vectors = detection_case
    result = curate(frame, vectors, CurationSettings())
    planted_pairs = {(p.copy, p.original) for p in planted["copies"]}
    gone = removed_paths(result, NEAR_DUPLICATE)
    # one of each planted pair goes (the copy or, when the copy has more pixels, the original)
    found = sum(copy in gone or original in gone for copy, original in planted_pairs)
    assert found / len(planted_pairs) >= 0.95
    originals_or_copies = {p for pair in planted_pairs for p in pair}
    false_removals = gone - originals_or_copies
    assert len(false_removals) <= 0.01 * planted["distinct_train"]
    assert result.report["removed"]["near_duplicate"] == len(gone)


def test_planted_copies_of_val_images_are_removed_from_training(detection_case):
    planted, frame, vectors = detection_case
    result = curate(frame, vectors, CurationSettings())
    contaminated = {p.copy for p in planted["val_copies"]}
    # out of training for either reason: a val copy can also sit in a near-duplicate group of training images
    out = removed_paths(result, VAL_NEAR_COPY) | removed_paths(result, NEAR_DUPLICATE)
    assert len(contaminated & out) / len(contaminated) >= 0.95
    # distinct look-alikes of a val image count as false removals (the same 1% line as above)
    assert len(removed_paths(result, VAL_NEAR_COPY) - contaminated) <= 0.01 * planted["distinct_train"]
    assert (frame.loc[result.kept, "split"] == "val").sum() == (frame["split"] == "val").sum()  # val untouched


def test_balanced_sampling_flattens_the_cluster_histogram(manifest_and_vectors):
    frame, vectors = manifest_and_vectors
    result = curate(frame, vectors, CurationSettings(levels=(16, 4), target_share=0.5))
    sampling = result.report["sampling"]
    for level in sampling["levels"]:
        assert level["evenness_after"] > level["evenness_before"]
    assert sum(result.report["labels_after"].values()) == sampling["target"]  # labels are reported, not used
    assert result.report["images_out"]["train"] == sampling["target"]
    assert len(removed_paths(result, SAMPLED_OUT)) == result.report["removed"]["balanced_sampling"]


def test_same_inputs_and_seed_give_the_same_curated_manifest(manifest_and_vectors):
    frame, vectors = manifest_and_vectors
    settings = CurationSettings(levels=(16, 4), target_share=0.5, seed=3)
    first, second = curate(frame, vectors, settings), curate(frame, vectors, settings)
    assert np.array_equal(first.kept, second.kept)
    pd.testing.assert_frame_equal(first.removed, second.removed)


def test_one_embedding_per_row_is_required(manifest_and_vectors):
    frame, vectors = manifest_and_vectors
    with pytest.raises(ValueError, match=f"one embedding per manifest row: {len(vectors) - 1} for {len(frame)} rows"):
        curate(frame, vectors[:-1], CurationSettings())


def test_nothing_is_deleted_from_disk(planted, manifest_and_vectors):
    frame, vectors = manifest_and_vectors
    result = curate(frame, vectors, CurationSettings(levels=(16, 4), target_share=0.5))
    assert all((Path(planted["root"]) / p).is_file() for p in result.removed["path"])
