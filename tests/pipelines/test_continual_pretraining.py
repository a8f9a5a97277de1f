"""Continual pretraining (``pretrain.init_from``) through Kedro's runner: train and register on one
data version, then warm-start from the registered version on the next one (real training process,
real sqlite MLflow registry), resume that run, and the pieces on their own."""

import hashlib
import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from kedro.io import DataCatalog
from mlflow.tracking import MlflowClient
from safetensors.torch import load_file, save_file

from dinoflow.config import resolve_config, to_dict
from dinoflow.config.pipeline_params import EvaluateParams, LauncherParams, RegisterParams, TunedParams
from dinoflow.contracts import DatasetIndex
from dinoflow.data.synthetic import SyntheticSpec, generate
from dinoflow.datasets import OptionalYAMLDataset
from dinoflow.launch.run_folder import init_source, run_key, stage_init, training_code_fingerprint
from dinoflow.pipelines.pretrain import create_pipeline as pretrain
from dinoflow.pipelines.register import create_pipeline as register
from dinoflow.registry.mlflow_registry import download_backbone_files, registered_version
from dinoflow.tracking import mlflow_run
from dinoflow.train.run_files import BACKBONE_NAME, INIT_DIR
from dinoflow.train.warm_start import RECORD_NAME, state_digest
from tests.conftest import shards_of
from tests.project_copy import PROJECT_ROOT
from tests.runner import pretrain as run_pretrain
from tests.runner import run_pipeline
from tests.train.test_warm_start import source_folder

PRESETS = yaml.safe_load((PROJECT_ROOT / "conf" / "base" / "parameters_pretrain.yml").read_text())["pretrain_presets"]
MODEL = "ci-backbone"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def data_versions(tmp_path_factory) -> list[dict]:
    """Two versions of the data: the same 4 classes, other images (another generator seed)."""
    versions = []
    for seed in (21, 22):
        root = tmp_path_factory.mktemp(f"images-{seed}") / "synthetic"
        generate(SyntheticSpec(num_classes=4, train_per_class=16, val_per_class=4, image_size=32, seed=seed), root)
        versions.append(shards_of(root, tmp_path_factory.mktemp(f"shards-{seed}")))
    return versions


def make_catalog(dataset_index: dict, pretrain_params: dict, tmp_path: Path) -> DataCatalog:
    catalog = DataCatalog()
    catalog["dataset_index"] = DatasetIndex.model_validate(dataset_index)
    catalog["params:pretrain"] = pretrain_params
    catalog["params:pretrain_presets"] = PRESETS
    catalog["params:pretrain_tuned"] = TunedParams(use=False)
    catalog["tuned_pretrain"] = OptionalYAMLDataset(filepath=str(tmp_path / "tuned_pretrain.yml"))
    catalog["params:pretrain_launcher"] = LauncherParams(
        nproc_per_node=1, timeout_s=300, output_root=str(tmp_path / "models"), system_metrics_interval_s=0
    )
    catalog["params:register"] = RegisterParams(model_name=MODEL, alias="challenger")
    catalog["params:evaluate"] = EvaluateParams(knn_k=5, knn_ks=[5], knn_temperature=0.07, linear_epochs=1,
                                                segmentation_epochs=1, segmentation_lr=0.01, batch_size=16,
                                                pictures=0)  # fmt: skip
    catalog["metrics"] = {"knn_top1": 0.5}  # what evaluate would score: not under test here
    catalog["data_source"] = {"kind": "synthetic", "root": "unused"}
    catalog["validation_report"] = {"success": True}
    return catalog


@pytest.mark.slow
def test_warm_start_from_the_registered_version_on_new_data_then_resume(data_versions, tmp_path, mlflow_tmp, caplog):
    client = MlflowClient()
    cold = run_pipeline(pretrain() + register(), make_catalog(data_versions[0], {"preset": "ci"}, tmp_path))
    assert cold["registration"].load()["version"] == "1"
    mlflow_run.end_run()

    # Run 2: the next data version, continuing from what run 1 registered (checkpoints kept for the resume below).
    warm_params = {"preset": "ci", "init_from": f"models:/{MODEL}@challenger",
                   "run": {"checkpoint_every": 2, "keep_checkpoints": 2}}  # fmt: skip
    warm_run = mlflow_run.start_run(tmp_path, "test", "warm", tags={"git_sha": "test"})
    warm = run_pipeline(pretrain() + register(), make_catalog(data_versions[1], warm_params, tmp_path))
    assert warm["registration"].load()["version"] == "2"
    parent = download_backbone_files(registered_version(f"models:/{MODEL}/1"), tmp_path / "v1")

    # Lineage on the run and on the new version; the registered weights are the parent's weights.
    tags = client.get_run(warm_run).data.tags
    assert tags["parent_model_version"] == f"{MODEL}/1"
    assert tags["parent_weights_sha256"] == sha256(parent / BACKBONE_NAME)
    assert client.get_run(warm_run).data.params["pretrain.init_from"] == f"models:/{MODEL}@challenger"
    version = client.get_model_version(MODEL, "2")
    assert version.tags["parent_model_version"] == f"{MODEL}/1"
    assert f"warm-started from `{MODEL}/1`" in version.description

    # At step 0 the student and teacher backbones were the registered weights (digests taken inside the run).
    output_dir = tmp_path / "models" / tags["config_hash"]
    record = json.loads((output_dir / RECORD_NAME).read_text())
    registered = state_digest(load_file(parent / BACKBONE_NAME))
    assert record["student_backbone_sha256"] == record["teacher_backbone_sha256"] == registered
    assert sha256(output_dir / INIT_DIR / BACKBONE_NAME) == sha256(parent / BACKBONE_NAME)  # staged in the run
    assert load_file(output_dir / BACKBONE_NAME).keys() == load_file(parent / BACKBONE_NAME).keys()

    # The run folder is not the one a cold run, or a warm start from other weights, would use.
    config = to_dict(resolve_config(warm_params, PRESETS))
    cold_config = to_dict(resolve_config({**warm_params, "init_from": None}, PRESETS))
    fingerprint, code = data_versions[1]["fingerprint"], training_code_fingerprint()
    assert tags["config_hash"] == run_key(config, fingerprint, code, tags["parent_weights_sha256"])
    assert tags["config_hash"] not in (run_key(cold_config, fingerprint, code), run_key(config, fingerprint, code))
    mlflow_run.end_run()

    # Resume run 2 from its iteration-2 checkpoint with the staged source spoilt: the checkpoint wins.
    finished, warm_record = load_file(output_dir / BACKBONE_NAME), (output_dir / RECORD_NAME).read_text()
    shutil.copyfile(output_dir / "checkpoint_00000002.pt", output_dir / "checkpoint.pt")
    (output_dir / "summary.json").unlink()
    (output_dir / BACKBONE_NAME).unlink()
    spoilt = {k: torch.zeros_like(v) for k, v in load_file(output_dir / INIT_DIR / BACKBONE_NAME).items()}
    save_file(spoilt, output_dir / INIT_DIR / BACKBONE_NAME)
    # As if run 2 had stopped before registering: @challenger still at v1. (Where the alias has moved,
    # the source's weights differ, and so do the run key and folder: a new run, not a resume.)
    client.set_registered_model_alias(MODEL, "challenger", "1")
    mlflow_run.start_run(tmp_path, "test", "resume", tags={"git_sha": "test"})
    catalog = make_catalog(data_versions[1], warm_params, tmp_path)
    args = [catalog.load(n) for n in ("dataset_index", "params:pretrain", "params:pretrain_presets",
                                      "params:pretrain_launcher")]  # fmt: skip
    with caplog.at_level(logging.INFO, logger="dinoflow.launch.local"):
        resumed, _ = run_pretrain(*args)
    assert resumed.output_dir == str(output_dir) and resumed.parent_model_version == f"{MODEL}/1"
    assert f"the warm start from models:/{MODEL}@challenger is not applied again" in caplog.text
    assert "resumed from" in caplog.text and (output_dir / RECORD_NAME).read_text() == warm_record
    for key, value in load_file(output_dir / BACKBONE_NAME).items():
        torch.testing.assert_close(value, finished[key], rtol=0, atol=0, msg=key)


def test_a_run_folder_source_is_staged_once_with_its_lineage(tiny_config, tmp_path):
    folder = tmp_path / "run"
    source_folder(tiny_config, folder)
    source, lineage = init_source(str(folder), tmp_path / "work")
    assert source == folder
    assert lineage == {"parent_model_version": str(folder), "parent_weights_sha256": sha256(folder / BACKBONE_NAME)}
    staged = stage_init(source, tmp_path / "out")
    assert staged == tmp_path / "out" / INIT_DIR and sorted(p.name for p in staged.iterdir()) == [
        "config.yaml", BACKBONE_NAME]  # fmt: skip
    (folder / BACKBONE_NAME).write_bytes(b"changed later")
    assert stage_init(source, tmp_path / "out") == staged and (staged / BACKBONE_NAME).read_bytes() != b"changed later"
    assert [p.name for p in (tmp_path / "out").iterdir()] == [INIT_DIR]  # no partial copy left behind
    with pytest.raises(FileNotFoundError, match=r"pretrain.init_from='.*empty': .* lacks config.yaml"):
        init_source(str(tmp_path / "empty"), tmp_path / "work")


def test_an_unknown_registered_source_names_the_uri(mlflow_tmp, tmp_path):
    with pytest.raises(LookupError, match=r"has no models:/nothing@champion"):
        init_source("models:/nothing@champion", tmp_path)
