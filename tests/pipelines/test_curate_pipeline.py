"""The curate pipeline with Kedro's runner on a real folder with planted near-copies: off, the
manifest passes unchanged; on, the copies leave the manifest that the dataset node packs, the
reports say why, and the pictures reach the MLflow run."""

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from kedro.io import DataCatalog
from kedro_datasets.partitions import PartitionedDataset

from dinoflow.config import save_config
from dinoflow.config.pipeline_params import CurationParams, DatasetParams
from dinoflow.data.manifest import build_manifest
from dinoflow.data.shards import ShardReader
from dinoflow.datasets import AtomicCSVDataset, AtomicImageDataset, AtomicJSONDataset, AtomicParquetDataset
from dinoflow.pipelines.curate import create_pipeline as curate
from dinoflow.pipelines.dataset import create_pipeline as dataset
from dinoflow.registry.mlflow_registry import register_backbone
from dinoflow.train.builders import build_backbone_from_config
from dinoflow.train.checkpoint import export_weights
from dinoflow.train.run_files import BACKBONE_NAME
from tests.pipelines.test_data_pipelines import data_params
from tests.runner import run_pipeline


def run(planted, tmp_path, **curation) -> tuple[dict, pd.DataFrame]:
    manifest = pd.DataFrame(
        [r for r in build_manifest(planted["root"], progress=False, workers=1) if r["status"] == "ok"]
    )
    files = tmp_path / "catalog"  # the curate outputs as conf/base/catalog.yml stores them
    catalog = DataCatalog({
        "curated_manifest": AtomicParquetDataset(filepath=str(files / "curated_manifest.parquet")),
        "curation_report": AtomicJSONDataset(filepath=str(files / "curation_report.json")),
        "curation_removed": AtomicCSVDataset(filepath=str(files / "curation_removed.csv"), save_args={"index": False}),
        "curation_pictures": PartitionedDataset(path=str(files / "curation"), dataset=AtomicImageDataset,
                                                filename_suffix=".png", overwrite=True),
    })  # fmt: skip
    catalog["clean_manifest"] = manifest
    catalog["data_source"] = {"root": str(planted["root"])}
    catalog["params:curation"] = CurationParams(
        **{
            "enabled": True,
            "sampling": {"levels": [16, 4]},
            "workers": 1,
            **curation,
        }
    )
    catalog["params:data"] = data_params(tmp_path)
    catalog["params:dataset"] = DatasetParams(max_side=32, workers=1, output_dir=str(tmp_path / "dataset"))
    outputs = run_pipeline(curate() + dataset(), catalog)
    names = ("curated_manifest", "curation_report", "curation_removed")
    return {"dataset_index": outputs["dataset_index"].load(), **{n: catalog.load(n) for n in names}}, manifest


def test_off_the_validated_manifest_reaches_the_dataset_unchanged(planted, tmp_path, mlflow_tmp):
    outputs, manifest = run(planted, tmp_path, enabled=False)
    pd.testing.assert_frame_equal(outputs["curated_manifest"], manifest)
    assert outputs["curation_report"] == {"enabled": False} and outputs["curation_removed"].empty
    assert list(outputs["curation_removed"].columns) == ["path", "split", "reason", "detail", "similarity"]
    assert outputs["dataset_index"].splits["train"].count == (manifest["split"] == "train").sum()


def test_on_the_copies_leave_the_dataset_and_the_run_shows_why(planted, tmp_path, mlflow_tmp):
    outputs, manifest = run(planted, tmp_path, sampling={"levels": [16, 4], "target_share": 0.8})
    report, removed = outputs["curation_report"], outputs["curation_removed"]
    planted_copies = {p.copy for p in planted["copies"]} | {p.copy for p in planted["val_copies"]}
    assert len(planted_copies - set(outputs["curated_manifest"]["path"])) >= 0.95 * len(planted_copies)
    assert set(removed["reason"]) == {"near-duplicate", "near-copy of a val image", "balanced sampling"}
    assert sum(report["removed"].values()) == len(removed) == len(manifest) - len(outputs["curated_manifest"])
    train_count = (outputs["curated_manifest"]["split"] == "train").sum()
    index = outputs["dataset_index"]
    assert index.splits["train"].count == train_count == report["images_out"]["train"]
    assert len(ShardReader.from_index(Path(index.dir), "train")) == train_count
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(mlflow_tmp, "curation")}
    assert artifacts == {"curation/near_duplicates.png", "curation/cluster_sizes.png", "curation/cluster_examples.png"}
    pictures = {p.name for p in (tmp_path / "catalog" / "curation").iterdir()}  # the same pictures, as files
    assert pictures == {"near_duplicates.png", "cluster_sizes.png", "cluster_examples.png"}
    metrics = mlflow.get_run(mlflow_tmp).data.metrics
    assert metrics["curation.removed.near_duplicate"] == report["removed"]["near_duplicate"]


def test_a_registered_model_that_does_not_exist_is_named(planted, tmp_path, mlflow_tmp):
    with pytest.raises(LookupError, match="has no models:/nothing-here@champion"):
        run(planted, tmp_path, embedding="models:/nothing-here@champion")


def register_tiny_backbone(config, folder: Path, model_name: str) -> dict:
    """A random-init backbone of ``config`` registered as ``models:/<model_name>@champion`` in the
    active run (``mlflow_tmp``), with the files a pipeline registers (config, weights)."""
    folder.mkdir(parents=True, exist_ok=True)
    backbone = build_backbone_from_config(config, drop_path=False)
    files = [save_config(config, folder / "config.yaml"),
             export_weights(backbone.state_dict(), folder / BACKBONE_NAME)]  # fmt: skip
    size = config.crops.global_size
    example = np.random.default_rng(0).standard_normal((2, 3, size, size)).astype(np.float32)
    return register_backbone(backbone, example, model_name, "champion", tags={}, files=files)


def test_a_registered_backbone_embeds_the_images(planted, tmp_path, mlflow_tmp, tiny_config):
    """``curation.embedding: models:/...`` rebuilds the version from its registered files and
    embeds every image with its CLS token at the version's own crop size."""
    register_tiny_backbone(tiny_config, tmp_path, "curation-test")
    outputs, _ = run(planted, tmp_path, embedding="models:/curation-test@champion")
    report = outputs["curation_report"]
    assert report["embedding"].startswith("models:/curation-test@champion (version 1): CLS token of the 16 px")
    assert report["removed"]["near_duplicate"] > 0


def test_a_large_removed_share_is_a_warning_that_names_its_parameters(planted, tmp_path, mlflow_tmp, caplog):
    outputs, _ = run(planted, tmp_path)  # about a fifth of this folder are planted copies
    report = outputs["curation_report"]
    share = report["removed"]["near_duplicate"] / report["images_in"]["train"]
    assert 0.1 < share < 0.25 and "curation.warn_removed_share" not in caplog.text
    run(planted, tmp_path / "again", warn_removed_share=0.1)
    assert f"took {100 * share:.0f}% of the training images" in caplog.text
    assert (
        "curation.warn_removed_share = 10%" in caplog.text and "curation.duplicate_threshold (now 0.97)" in caplog.text
    )
    assert "(curation.whitening, now null; e.g. 0.01 with curation.colour=false)" in caplog.text


def test_whitened_embeddings_still_find_the_copies(planted, tmp_path, mlflow_tmp):
    """``curation.whitening``: the folder's own PCA basis, on the pixel embedding's crop variants too."""
    outputs, _ = run(planted, tmp_path, thumbnail=16, colour=False, whitening=0.01, duplicate_threshold=0.9,
                     decontamination_threshold=0.9)  # fmt: skip
    report = outputs["curation_report"]
    assert report["embedding"].startswith("pixels: blurred grey 16 px thumbnails")
    assert report["embedding"].endswith("16 crop variant(s) each, PCA-whitened (shrinkage 0.01)")
    planted_copies = {p.copy for p in planted["copies"]} | {p.copy for p in planted["val_copies"]}
    found = len(planted_copies - set(outputs["curated_manifest"]["path"])) / len(planted_copies)
    involved = {p for c in planted["copies"] for p in (c.copy, c.original)} | planted_copies
    distinct_removed = len(set(outputs["curation_removed"]["path"]) - involved) / planted["distinct_train"]
    assert found >= 0.9 and distinct_removed <= 0.01  # measured: 30 of 32 copies, no distinct image
