"""pretrain → evaluate → register with Kedro's runner on an in-memory catalog and the run-page
hook (real subprocess, real MLflow sqlite store, real registry)."""

import hashlib
import json
import logging
from pathlib import Path

import mlflow
import pytest
import torch
from kedro.io import DataCatalog
from kedro_datasets.partitions import PartitionedDataset
from mlflow.tracking import MlflowClient
from safetensors.torch import save_file

from dinoflow.config import ConfigError, save_config, to_dict
from dinoflow.config.pipeline_params import EvaluateParams, LauncherParams, RegisterParams, TunedParams
from dinoflow.contracts import DatasetIndex, PretrainResult
from dinoflow.datasets import AtomicImageDataset, OptionalYAMLDataset
from dinoflow.eval.protocol import evaluation_protocol
from dinoflow.pipelines.evaluate import create_pipeline as evaluate
from dinoflow.pipelines.pretrain import create_pipeline as pretrain
from dinoflow.pipelines.pretrain.nodes import plan_pretrain_node
from dinoflow.pipelines.register import create_pipeline as register
from dinoflow.pipelines.register.nodes import register_node
from dinoflow.tracking import mlflow_run, run_page
from dinoflow.train.builders import build_backbone_from_config
from dinoflow.train.run_files import BACKBONE_NAME
from tests.runner import pretrain as run_pretrain
from tests.runner import run_pipeline


@pytest.fixture
def catalog(tiny_shards, tiny_config, tmp_path):
    catalog = DataCatalog()
    catalog["dataset_index"] = DatasetIndex.model_validate(tiny_shards)
    catalog["params:pretrain"] = to_dict(tiny_config)
    catalog["params:pretrain_presets"] = {}
    catalog["params:pretrain_tuned"] = TunedParams(use=False)
    catalog["tuned_pretrain"] = OptionalYAMLDataset(filepath=str(tmp_path / "tuned_pretrain.yml"))
    catalog["params:pretrain_launcher"] = LauncherParams(
        nproc_per_node=1, timeout_s=300, output_root=str(tmp_path / "models"), system_metrics_interval_s=0.2
    )
    catalog["params:evaluate"] = EvaluateParams(
        knn_k=5,
        knn_ks=[5, 10],
        knn_temperature=0.07,
        linear_epochs=3,
        segmentation_epochs=2,
        segmentation_lr=0.01,
        batch_size=16,
        pictures=3,
    )
    catalog["evaluation_pictures"] = PartitionedDataset(  # as conf/base/catalog.yml stores them
        path=str(tmp_path / "pictures"), dataset=AtomicImageDataset, filename_suffix=".png", overwrite=True
    )
    catalog["params:register"] = RegisterParams(model_name="tiny-backbone", alias="challenger")
    catalog["data_source"] = {"kind": "synthetic", "root": "unused"}
    catalog["validation_report"] = {"success": True}
    return catalog


def test_pretrain_evaluate_register(catalog, mlflow_tmp, tmp_path):
    mlflow_run.set_tags({"data.root": "data/01_raw/synthetic"})  # as ingestion (or the hook) tags it
    outputs = run_pipeline(pretrain() + evaluate() + register(), catalog)
    client = MlflowClient()
    metrics = client.get_run(mlflow_tmp).data.metrics  # the run page logged evaluate's output, grouped
    assert all(
        0.0 <= metrics[f"eval/{k}"] <= 1.0
        for k in (
            "knn_top1",
            "knn_top5",
            "knn_top1_random_init",
            "knn_top1_raw_pixels",
            "seg_miou",
            "seg_miou_random_init",
        )
    )
    registration = outputs["registration"].load()
    assert registration["version"] == "1" and registration["model_uri"] == "models:/tiny-backbone@challenger"
    # The training process logged into the pipeline's run through MLFLOW_RUN_ID.
    history = client.get_metric_history(mlflow_tmp, "train/loss")
    assert [m.step for m in history] == list(range(1, 13))
    version = client.get_model_version_by_alias("tiny-backbone", "challenger")
    assert version.run_id == mlflow_tmp and version.tags["metric.knn_top1"] == f"{metrics['eval/knn_top1']:.6f}"
    # What promote needs to reuse these scores instead of re-scoring the version.
    assert version.tags["data_fingerprint"] == catalog.load("dataset_index").fingerprint
    assert version.tags["evaluation_protocol"] == evaluation_protocol(catalog.load("params:evaluate"))
    # For people: the version's scorecard and the model's overview (tags stay for machines).
    assert f"| k-NN top-1 | **{metrics['eval/knn_top1']:.3f}** |" in version.description
    assert "**Data**: unused" in version.description and "**Gate**: not decided yet" in version.description
    assert "**@challenger** → v1" in client.get_registered_model("tiny-backbone").description
    # Pictures are images on the run page (keyed by name), and files beside the reports.
    images = {a.path.split("/")[1].split("+")[0] for a in client.list_artifacts(mlflow_tmp, "images")}
    assert images == {"attention_maps", "patch_pca", "training_curve"}
    assert {p.name for p in (tmp_path / "pictures").iterdir()} == {
        "attention_maps.png",
        "patch_pca.png",
        "training_curve.png",
    }
    # The training process sampled the machine into the run's system charts.
    system = {k for k in client.get_run(mlflow_tmp).data.metrics if k.startswith("system/")}
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= system
    # MLflow 3's logged model carries the evaluation scores.
    logged = client.get_logged_model(registration["logged_model_id"])
    assert {m.key: m.value for m in logged.metrics}["eval/knn_top1"] == metrics["eval/knn_top1"]
    # Named after what it trained; described in the summary's words, node by node.
    run = client.get_run(mlflow_tmp)
    assert run.info.run_name.startswith(f"custom-synthetic-{run.data.tags['config_hash'][:6]}-")
    note = run.data.tags["mlflow.note.content"].split("  \n")
    assert note[0].startswith("Pretrained preset custom on synthetic (config ") and note[1].startswith("k-NN top-1")
    contexts = {
        i.dataset.name: {t.key: t.value for t in i.tags}["mlflow.data.context"] for i in run.inputs.dataset_inputs
    }
    assert contexts == {"synthetic/train": "training", "synthetic/val": "evaluation"}
    assert note[-1] == "Registered model: tiny-backbone version 1 alias @challenger → models:/tiny-backbone@challenger"


def test_an_identical_rerun_links_to_the_registered_version(catalog, tiny_config, tmp_path, mlflow_tmp, caplog):
    """Same run key and same weights: the register node points the alias at the existing version and
    says so; other weights under the same run key are a new version."""
    output_dir = tmp_path / "models" / "abc123def456"
    backbone = build_backbone_from_config(tiny_config, drop_path=False)
    output_dir.mkdir(parents=True)
    save_file(backbone.state_dict(), output_dir / BACKBONE_NAME)
    result = PretrainResult(config=str(save_config(tiny_config, output_dir / "config.yaml")),
                            output_dir=str(output_dir), config_hash="abc123def456", mlflow_run_id="none",
                            checkpoint=str(output_dir / "checkpoint.pt"),
                            summary={"iterations": 0, "loop_seconds": 0.0, "iters_per_epoch": 1, "peak_lr": 0.0})  # fmt: skip
    args = [{"knn_top1": 0.5}, {"success": True}, {"root": "unused"}, catalog.load("dataset_index")]
    params = [catalog.load("params:register"), catalog.load("params:evaluate")]
    client = MlflowClient()

    first = register_node(result, *args, *params)
    version = client.get_model_version("tiny-backbone", first["version"])
    digest = hashlib.sha256((output_dir / BACKBONE_NAME).read_bytes()).hexdigest()
    assert version.tags["weights_sha256"] == digest and version.tags["config_hash"] == "abc123def456"
    assert json.loads(version.tags["label_set"]) == catalog.load("dataset_index").classes
    # The image-in flavour prepares served images as the dataset stored them and evaluation viewed them.
    model_dir = Path(
        mlflow.artifacts.download_artifacts(f"models:/tiny-backbone/{first['version']}", dst_path=str(tmp_path))
    )
    settings = catalog.load("dataset_index").settings
    assert json.loads((model_dir / "data/backbone/preprocessing.json").read_text()) == {
        "image_size": tiny_config.crops.global_size, "max_side": settings["max_side"],
        "max_aspect": settings["max_aspect"], "background": settings["background"],
    }  # fmt: skip
    mlflow_run.end_run()

    rerun = mlflow_run.start_run(tmp_path, "test", "rerun", tags={})
    with caplog.at_level(logging.INFO, logger="dinoflow.registry.registration"):
        again = register_node(result, *args, *params)
    run_page.log_node_outputs({}, {"registration": again})  # as the run hook does after the node
    assert again == {**first, "linked": True, "logged_model_uri": version.source}  # the same logged model id too
    assert f"tiny-backbone v{first['version']} was registered from the same run key abc123def456" in caplog.text
    assert [str(v.version) for v in client.search_model_versions("name = 'tiny-backbone'")] == [first["version"]]
    assert client.get_run(rerun).data.tags["register.linked_version"] == first["version"]
    assert "(existing version: same run key and weights)" in client.get_run(rerun).data.tags["mlflow.note.content"]

    with torch.no_grad():
        next(backbone.parameters()).add_(1.0)  # other weights under the same run key: a new version
    save_file(backbone.state_dict(), output_dir / BACKBONE_NAME)
    other = register_node(result, *args, *params)
    assert "linked" not in other and other["version"] != first["version"]
    assert str(client.get_model_version_by_alias("tiny-backbone", "challenger").version) == other["version"]


def test_same_config_and_data_reuses_the_finished_run(catalog, mlflow_tmp):
    args = [
        catalog.load(n)
        for n in (
            "dataset_index",
            "params:pretrain",
            "params:pretrain_presets",
            "params:pretrain_launcher",
        )
    ]
    first, curve = run_pretrain(*args)
    assert list(curve["step"]) == list(range(1, first.summary.iterations + 1)) and not first.reused
    mlflow.end_run()
    with mlflow.start_run() as second_run:
        second, _ = run_pretrain(*args)
    assert second.output_dir == first.output_dir and second.summary == first.summary and second.reused
    run = MlflowClient().get_run(second_run.info.run_id)
    assert run.data.tags["pretrain.reused"] == "true"
    assert len(MlflowClient().get_metric_history(run.info.run_id, "train/loss")) == first.summary.iterations


def test_bad_training_config_names_the_key(catalog, mlflow_tmp):
    with pytest.raises(ConfigError, match=r"pretrain\.crops\.local_sise"):
        plan_pretrain_node(
            catalog.load("dataset_index"),
            {"crops": {"local_sise": 3}},
            {},
            catalog.load("params:pretrain_launcher"),
        )
