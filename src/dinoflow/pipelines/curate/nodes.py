"""Curation: embed the validated images, drop near-duplicates and training near-copies of val
images, sample evenly across clusters (``dinoflow.curation``); off, the manifest passes unchanged.

The curation code (torch, faiss, matplotlib) is imported when curation runs: ``kedro run`` imports
every pipeline's nodes, and curation is off by default."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from PIL.Image import Image  # at module level: Kedro validates params: only when the annotations resolve

from dinoflow.config.pipeline_params import CurationParams, DataParams, DatasetParams
from dinoflow.data.decode import parse_background
from dinoflow.data.manifest import inside

if TYPE_CHECKING:
    from dinoflow.curation.curate import Curation, CurationSettings

log = logging.getLogger(__name__)
REMOVED_COLUMNS = ["path", "split", "reason", "detail", "similarity"]


def embed(
    paths: list[Path], curation: CurationParams, max_side: int, background: tuple[int, int, int]
) -> tuple[np.ndarray, str]:
    """(N, V, D) unit embeddings of the images (V variants each) and what made them (for the report)."""
    from dinoflow.curation.embeddings import whiten

    vectors, made_by = _embed_unwhitened(paths, curation, max_side, background)
    if curation.whitening is None:
        return vectors, made_by
    return whiten(vectors, curation.whitening), f"{made_by}, PCA-whitened (shrinkage {curation.whitening})"


def _embed_unwhitened(
    paths: list[Path], curation: CurationParams, max_side: int, background: tuple[int, int, int]
) -> tuple[np.ndarray, str]:
    from dinoflow.curation.embeddings import backbone_embeddings, pixel_embeddings
    from dinoflow.registry.mlflow_registry import download_backbone_files, registered_version
    from dinoflow.train.builders import load_backbone

    if curation.embedding == "pixels":
        vectors = pixel_embeddings(paths, curation.eval_size, curation.thumbnail, curation.crop_tolerance, max_side,
                                   background, curation.colour, workers=curation.workers or os.cpu_count() or 1,
                                   progress=True)  # fmt: skip
        return vectors, (f"pixels: blurred {'colour' if curation.colour else 'grey'} {curation.thumbnail} px "
                         f"thumbnails of the {curation.eval_size} px "
                         f"evaluation view, {vectors.shape[1]} crop variant(s) each")  # fmt: skip
    version = registered_version(curation.embedding)
    with tempfile.TemporaryDirectory() as tmp:
        backbone, cfg = load_backbone(download_backbone_files(version, Path(tmp)))
    size = cfg.crops.global_size
    vectors = backbone_embeddings(backbone, paths, size, max_side, background, progress=True)
    return vectors, f"{curation.embedding} (version {version.version}): CLS token of the {size} px evaluation view"


def settings_of(curation: CurationParams) -> CurationSettings:
    from dinoflow.curation.curate import CurationSettings

    s = curation.sampling
    return CurationSettings(curation.duplicate_threshold, curation.neighbours, curation.decontamination_threshold,
                            tuple(s.levels), s.target_size, s.target_share, s.kmeans_iterations, s.seed)  # fmt: skip


def draw_pictures(result: Curation, paths: list[Path], shown: int) -> dict[str, Image]:
    """The duplicate groups, the cluster sizes before / after sampling, examples per top cluster."""
    from dinoflow.curation import pictures

    drawn = {}
    if result.groups and shown:
        rows = [[paths[i] for i in group[:8]] for group in result.groups[:shown]]
        drawn["near_duplicates"] = pictures.image_rows(rows)
    if result.report["sampling"] and shown:
        finest = result.report["sampling"]["levels"][0]
        drawn["cluster_sizes"] = pictures.cluster_size_histogram(finest["sizes_before"], finest["sizes_after"])
        top = result.clusters[-1]
        rows = [[paths[i] for i in np.flatnonzero(top == c)[:8]] for c in np.unique(top[top >= 0])[:shown]]
        drawn["cluster_examples"] = pictures.image_rows(rows)
    return drawn


def warn_if_most_are_duplicates(report: dict[str, Any], curation: CurationParams) -> None:
    """Distinct photos of look-alike objects can pass for copies (README: on Fashion-MNIST the pixel
    embedding takes three quarters of the garments): say so when the removed share is large."""
    share = report["removed"]["near_duplicate"] / max(report["images_in"]["train"], 1)
    if share > curation.warn_removed_share:
        log.warning(
            "near-duplicate removal took %.0f%% of the training images (%d of %d), more than "
            "curation.warn_removed_share = %.0f%%. If the groups in curation/near_duplicates.png hold distinct "
            "images, raise curation.duplicate_threshold (now %s), whiten grey thumbnails of look-alike objects "
            "such as product shots (curation.whitening, now %s; e.g. 0.01 with curation.colour=false) or embed "
            "with a trained backbone "
            "(curation.embedding: models:/<name>@champion).",
            100 * share, report["removed"]["near_duplicate"], report["images_in"]["train"],
            100 * curation.warn_removed_share, curation.duplicate_threshold,
            "null" if curation.whitening is None else curation.whitening,
        )  # fmt: skip


def curate_node(
    clean_manifest: pd.DataFrame,
    source: dict[str, Any],
    curation: CurationParams,
    data: DataParams,
    dataset: DatasetParams,
) -> tuple[pd.DataFrame, dict[str, Any], pd.DataFrame, dict[str, Image]]:
    """Returns (curated manifest, report, removed rows with their reason, pictures by name)."""
    if not curation.enabled:
        return clean_manifest, {"enabled": False}, pd.DataFrame(columns=REMOVED_COLUMNS), {}
    from dinoflow.curation.curate import curate

    frame = clean_manifest.reset_index(drop=True)
    root = Path(source["root"])
    paths = [inside(root, p) for p in frame["path"]]
    vectors, embedding = embed(paths, curation, dataset.max_side, parse_background(data.alpha_background))
    result = curate(frame, vectors, settings_of(curation))
    report = {"enabled": True, "embedding": embedding, **result.report}
    log.info("curation kept %d of %d training images: removed %s", report["images_out"]["train"],
             report["images_in"]["train"], ", ".join(f"{n} {why}" for why, n in report["removed"].items()))  # fmt: skip
    warn_if_most_are_duplicates(report, curation)
    pictures = draw_pictures(result, paths, curation.pictures)
    return frame[result.kept].reset_index(drop=True), report, result.removed, pictures
