"""Data pipelines run with Kedro's runner on an in-memory catalog, plus node edge cases."""

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from kedro.io import DataCatalog
from kedro.pipeline import Pipeline
from kedro_datasets.json import JSONDataset
from kedro_datasets.pandas import CSVDataset
from PIL import Image

from dinoflow.config.pipeline_params import CurationParams, DataParams, DatasetParams, ValidationParams
from dinoflow.data.shards import ShardReader
from dinoflow.hooks import ValidationReportsHook
from dinoflow.pipelines.curate import create_pipeline as curate
from dinoflow.pipelines.data_ingestion import create_pipeline as ingestion
from dinoflow.pipelines.data_ingestion.nodes import build_manifest_node, materialize_source
from dinoflow.pipelines.data_validation import create_pipeline as validation
from dinoflow.pipelines.data_validation.nodes import stop_on_failed_validation_node, validate_manifest_node
from dinoflow.pipelines.dataset import create_pipeline as dataset
from dinoflow.tracking import mlflow_run
from dinoflow.validation import DataValidationError
from tests.runner import run_pipeline


def data_params(tmp_path, **overrides) -> DataParams:
    params = {
        "source": "synthetic",
        "synthetic_dir": str(tmp_path / "raw"),
        "synthetic": {"num_classes": 3, "train_per_class": 8, "val_per_class": 4, "image_size": 32,
                      "clutter_strokes": 3, "texture_strength": 0.4, "background_noise": 0.06, "seed": 0},
        "val_ratio": 0.2,
        "min_size": 16,
        "max_pixels": 10_000_000,
        "workers": 1,
        "ingest_cache": str(tmp_path / "ingest_cache.json"),
        "dvc_track": False,
    }  # fmt: skip
    return DataParams(**{**params, **overrides})


def validation_params(tmp_path, max_quarantine_share: float) -> ValidationParams:
    return ValidationParams(
        max_quarantine_share=max_quarantine_share, max_class_imbalance=10.0, docs_root=str(tmp_path / "reporting")
    )


def curation_params(tmp_path, **overrides) -> CurationParams:
    params = {"enabled": True, "sampling": {"levels": [8, 2]}, "workers": 1}
    return CurationParams(**{**params, **overrides})


def validate(manifest, data, validation):
    """Both validation nodes, as the pipeline chains them: (clean rows, quarantine, report) or the stop."""
    validated, quarantine, report = validate_manifest_node(manifest, data, validation)
    return stop_on_failed_validation_node(validated, report), quarantine, report


def test_ingestion_validation_dataset_with_the_runner(tmp_path, mlflow_tmp):
    catalog = file_catalog(tmp_path, data_params(tmp_path))  # the gate node consumes the report
    catalog["params:dataset"] = DatasetParams(max_side=24, workers=1, output_dir=str(tmp_path / "dataset"))
    catalog["params:curation"] = curation_params(tmp_path, enabled=False)
    outputs = run_pipeline(ingestion() + validation() + curate() + dataset(), catalog)
    index = outputs["dataset_index"].load()
    assert {split: s.count for split, s in index.splits.items()} == {"train": 24, "val": 12}
    assert index.classes == ["00_disc", "01_ring", "02_square"]
    train = ShardReader.from_index(Path(index.dir), "train")
    assert train.image(0).shape == (3, 24, 24) and train.mask(0).shape == (24, 24)
    assert set(train.labels().tolist()) == {0, 1, 2}
    report = catalog.load("validation_report")
    assert report["success"] and report["statistics"]["quarantined"] == 0
    assert Path(report["data_docs"]).is_file() and "manifest_suite" in Path(report["data_docs"]).read_text()


def test_user_folder_that_does_not_exist_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="data.source"):
        materialize_source(data_params(tmp_path, source=str(tmp_path / "missing")))


def test_too_many_bad_files_stop_the_pipeline_and_name_the_expectation(tmp_path, mlflow_tmp):
    params = data_params(tmp_path)
    source = materialize_source(params)
    for i in range(5):  # 5 of 41 files unreadable: above the 5% threshold
        (tmp_path / "raw" / "images" / "train" / "00_disc" / f"broken{i}.png").write_text("not a png")
    manifest = build_manifest_node(source, params)
    with pytest.raises(DataValidationError, match=r"broken files: 5 of 41 distinct files were quarantined \(12.2%\); "
                       r"allowed at most 5.0% \(validation.max_quarantine_share\)"):  # fmt: skip
        validate(manifest, params, validation_params(tmp_path, 0.05))
    clean, quarantine, report = validate(manifest, params, validation_params(tmp_path, 0.5))
    assert len(quarantine) == 5 and quarantine["status"].str.startswith("not decodable").all()
    assert len(clean) == 36 and isinstance(clean, pd.DataFrame)


def test_a_manifest_path_escaping_the_data_root_is_refused(tmp_path):
    from dinoflow.pipelines.dataset.nodes import build_dataset_node

    (tmp_path / "root").mkdir()
    (tmp_path / "secret.png").write_bytes(b"not for the dataset")
    manifest = pd.DataFrame([{"path": "../secret.png", "label": "", "mask_path": "", "width": 8, "height": 8,
                              "sha256": "x", "split": "train"}])  # fmt: skip
    params = DatasetParams(max_side=8, workers=1, output_dir=str(tmp_path / "dataset"))
    with pytest.raises(ValueError, match="resolves outside the data root"):
        build_dataset_node(manifest, {"root": str(tmp_path / "root")}, params, data_params(tmp_path))


def test_quarantine_is_logged_as_one_line_per_reason_with_examples(tmp_path, mlflow_tmp, caplog):
    folder = tmp_path / "photos" / "cats"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(20):
        Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    for i in range(5):
        (folder / f"broken{i}.png").write_text("not a png")
    for i in range(4):
        (folder / f"copy{i}.png").write_bytes((folder / f"{i:02d}.png").read_bytes())
    params = data_params(tmp_path, source=str(tmp_path / "photos"))
    manifest = build_manifest_node({"root": str(tmp_path / "photos")}, params)
    with caplog.at_level(logging.INFO, logger="dinoflow.pipelines.data_validation.nodes"):
        _, quarantine, _ = validate(manifest, params, validation_params(tmp_path, 0.5))
    lines = [r.getMessage() for r in caplog.records if r.name == "dinoflow.pipelines.data_validation.nodes"]
    assert lines == [
        "quarantined 5 file(s): not decodable (e.g. cats/broken0.png, cats/broken1.png, cats/broken2.png, ...)",
        "dropped 4 exact duplicate(s) (e.g. cats/copy0.png, cats/copy1.png, cats/copy2.png, ...)",
    ]
    assert quarantine["reason"].value_counts().to_dict() == {"not decodable": 5, "duplicate": 4}


def test_label_depth_reaches_the_manifest_and_the_class_balance_stop_is_in_words(tmp_path, mlflow_tmp):
    rng = np.random.default_rng(0)
    for folder, count in {"animals/mammals": 30, "animals/birds": 30, "plants/grass": 2}.items():
        (tmp_path / "tree" / folder).mkdir(parents=True)
        for i in range(count):
            image = Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8))
            image.save(tmp_path / "tree" / folder / f"{i}.png")
    source = {"root": str(tmp_path / "tree")}
    nested = data_params(tmp_path, source=source["root"])
    with pytest.raises(DataValidationError, match=r"largest class 'animals/\w+' has 30 images, 15.0 times the "
                       r"smallest 'plants/grass' \(2 images\).*validation.max_class_imbalance.*data.label_depth"):  # fmt: skip
        validate(build_manifest_node(source, nested), nested, validation_params(tmp_path, 0.05))
    shallow = data_params(tmp_path, source=source["root"], label_depth=1)
    manifest = build_manifest_node(source, shallow)
    assert manifest["label"].value_counts().to_dict() == {"animals": 60, "plants": 2}
    with pytest.raises(DataValidationError, match=r"'animals' has 60 images, 30.0 times the smallest 'plants'"):
        validate(manifest, shallow, validation_params(tmp_path, 0.05))


def file_catalog(tmp_path, data: DataParams) -> DataCatalog:
    """The validation's reports as files (as conf/base/catalog.yml has them), the rest in memory."""
    reporting = tmp_path / "08_reporting"
    catalog = DataCatalog(
        {
            "validation_report": JSONDataset(filepath=str(reporting / "validation_report.json")),
            "quarantine_report": CSVDataset(filepath=str(reporting / "quarantine.csv"), save_args={"index": False}),
        }
    )
    catalog["params:data"] = data
    catalog["params:validation"] = validation_params(tmp_path, 0.05)
    return catalog


def test_a_failed_validation_leaves_its_own_reports_not_the_previous_runs(tmp_path, mlflow_tmp):
    params = data_params(tmp_path)
    mlflow_run.set_tags({"kedro.run_id": "good-run"})
    run_pipeline(ingestion() + validation(), file_catalog(tmp_path, params))
    reporting = tmp_path / "08_reporting"
    assert pd.read_json(reporting / "validation_report.json", typ="series")["success"]
    for i in range(5):  # 5 of 41 files unreadable: above the 5% threshold
        (tmp_path / "raw" / "images" / "train" / "00_disc" / f"broken{i}.png").write_text("not a png")
    mlflow_run.set_tags({"kedro.run_id": "bad-run"})
    hook = ValidationReportsHook()  # as `kedro run` has it: the stop names the catalog's report files
    paths = {
        "validation_report": "08_reporting/validation_report.json",
        "quarantine_report": "08_reporting/quarantine.csv",
    }
    hook.after_context_created(FakeContext(tmp_path, paths))
    with pytest.raises(DataValidationError) as stop:
        run_pipeline(ingestion() + validation(), file_catalog(tmp_path, params), hook)
    assert str(stop.value).splitlines() == [
        "data validation failed (1 rule(s)):",
        "  broken files: 5 of 41 distinct files were quarantined (12.2%); allowed at most 5.0% "
        "(validation.max_quarantine_share)",
        "  quarantined: not decodable 5",
        "  reports: validation report 08_reporting/validation_report.json, quarantine list 08_reporting/quarantine.csv, "
        f"data docs {tmp_path / 'reporting' / 'gx' / 'uncommitted' / 'data_docs' / 'local_site' / 'index.html'}",
    ]
    report = JSONDataset(filepath=str(reporting / "validation_report.json")).load()
    assert not report["success"] and report["run"]["kedro_run_id"] == "bad-run"
    assert report["run"]["mlflow_run_id"] == mlflow_tmp and report["statistics"]["quarantined"] == 5
    quarantine = pd.read_csv(reporting / "quarantine.csv")
    assert len(quarantine) == 5 and set(quarantine["run_id"]) == {"bad-run"}
    assert set(quarantine["reason"]) == {"not decodable"}


class FakeContext:
    """What the hook reads of a Kedro context: the project path and the catalog's file paths."""

    def __init__(self, project_path: Path, paths: dict[str, str]) -> None:
        self.project_path = project_path
        self.config_loader = {"catalog": {name: {"type": "x", "filepath": path} for name, path in paths.items()}}


def test_reports_of_an_earlier_run_are_removed_before_a_run_that_validates(tmp_path):
    (tmp_path / "reports").mkdir()
    names = ("validation_report", "quarantine_report", "clean_manifest", "metrics")
    for name in names:
        (tmp_path / "reports" / name).write_text("from an earlier run")
    hook = ValidationReportsHook()
    hook.after_context_created(FakeContext(tmp_path, {name: f"reports/{name}" for name in names}))
    hook.before_pipeline_run({}, dataset(), DataCatalog())  # does not validate: nothing removed
    hook.before_node_run(None)
    assert len(list((tmp_path / "reports").iterdir())) == 4
    hook.before_pipeline_run({}, ingestion() + validation(), DataCatalog())
    # Refused before its first node (bad parameters, a held lock): the last run's reports stay.
    assert len(list((tmp_path / "reports").iterdir())) == 4
    hook.before_node_run(None)
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == ["metrics"]
    hook.before_pipeline_run({}, Pipeline([]) + validation(), DataCatalog())
    hook.before_node_run(None)  # nothing left to remove: no error
