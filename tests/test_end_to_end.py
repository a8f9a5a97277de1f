"""`kedro run` of the whole default pipeline on the `ci` preset, in a temporary project copy."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.project_copy import git_changes, kedro_run, make_project_copy
from tests.servers import CHROMIUM, mlflow_server, rendered_page

pytestmark = pytest.mark.slow

CI_PARAMS = ",".join(
    [
        "pretrain.preset=ci",
        "data.synthetic.train_per_class=40",
        "data.synthetic.val_per_class=20",
        "pretrain_launcher.system_metrics_interval_s=0.5",  # ci training lasts seconds
    ]
)


@pytest.fixture(scope="module")
def project_copy(tmp_path_factory) -> Path:
    # No store: the run creates it, as a fresh clone's first `kedro run` does.
    return make_project_copy(tmp_path_factory.mktemp("e2e") / "project", with_store=False)


@pytest.fixture(scope="module")
def project_run(project_copy):
    """`kedro run` of the default pipeline on the ci preset."""
    result = kedro_run(project_copy, "--params", CI_PARAMS)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return project_copy, result.stdout + result.stderr


@pytest.fixture(scope="module")
def mlflow_client(project_run):
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(f"sqlite:///{project_run[0] / 'mlflow.db'}")
    yield MlflowClient()
    mlflow.set_tracking_uri(None)


def the_run(client):
    runs = client.search_runs([client.get_experiment_by_name("dinoflow").experiment_id])
    assert len(runs) == 1
    return runs[0]


def test_metrics_file_holds_the_three_knn_figures(project_run):
    metrics = json.loads((project_run[0] / "data" / "08_reporting" / "metrics.json").read_text())
    for key in ("knn_top1", "knn_top1_random_init", "knn_top1_raw_pixels", "knn_top5", "knn_top1_k10",
                "knn_top1_k20", "knn_top1_k100", "knn_top1_k200", "linear_top1", "linear_top1_random_init", "seg_miou",
                "seg_miou_random_init", "seg_miou_majority"):  # fmt: skip
        assert 0.0 <= metrics[key] <= 1.0, key


def test_mlflow_run_finished_with_params_metrics_tags_and_artifacts(project_run, mlflow_client):
    run = the_run(mlflow_client)
    assert run.info.status == "FINISHED"
    assert {"eval/knn_top1", "eval/knn_top1_random_init", "eval/knn_top1_raw_pixels"} <= set(run.data.metrics)
    assert run.data.params["pretrain.preset"] == "ci"
    assert run.data.params["data.synthetic.train_per_class"] == "40"
    assert run.data.tags["validation_status"] == "passed"
    assert len(run.data.tags["git_sha"]) > 0 and run.data.tags["data.dvc_md5"].endswith(".dir")
    assert run.data.tags["git_dirty"] in ("true", "false") and run.data.tags["version.torch"].startswith("2.")
    artifacts = {a.path for a in mlflow_client.list_artifacts(run.info.run_id)}
    assert {"config", "validation", "backbone_files", "images"} <= artifacts
    assert "system/cpu_utilization_percentage" in run.data.metrics
    files = {a.path for a in mlflow_client.list_artifacts(run.info.run_id, "backbone_files")}
    assert files == {"backbone_files/config.yaml", "backbone_files/teacher_backbone.safetensors",
                     "backbone_files/teacher_head.safetensors", "backbone_files/random_init_backbone.safetensors",
                     "backbone_files/backbone.onnx"}  # fmt: skip


def test_training_loss_and_health_logged_at_every_logging_step(project_run, mlflow_client):
    run = the_run(mlflow_client)
    summary = json.loads((project_run[0] / "data" / "06_models" / "pretrain_result.json").read_text())["summary"]
    log_every, total = 2, summary["iterations"]
    expected = sorted(set(range(log_every, total + 1, log_every)) | {total})
    for key in (
        "train/loss",
        "train/lr",
        "train/teacher_temp",
        "health/teacher_entropy",
        "health/teacher_batch_entropy",
        "health/feature_std",
    ):
        steps = sorted(m.step for m in mlflow_client.get_metric_history(run.info.run_id, key))
        assert steps == expected, key


def test_registered_model_loads_back_by_alias(project_run, mlflow_client):
    import mlflow
    import torch

    version = mlflow_client.get_model_version_by_alias("dinoflow-backbone", "challenger")
    assert version.tags["validation_status"] == "passed" and version.run_id == the_run(mlflow_client).info.run_id
    model = mlflow.pytorch.load_model("models:/dinoflow-backbone@challenger")
    embeddings = model(torch.randn(3, 3, 32, 32))
    assert embeddings.shape == (3, 64) and torch.isfinite(embeddings).all()
    assert float(version.tags["onnx_max_abs_diff"]) < 1e-4


def test_first_promotion_is_decided_and_recorded(project_run, mlflow_client):
    promotion = json.loads((project_run[0] / "data" / "08_reporting" / "promotion.json").read_text())
    assert promotion["decision"] in ("promoted", "rejected") and promotion["champion_before"] is None
    assert promotion["reasons"][-1].startswith("first promotion: k-NN gain over random init")
    # conf/base turns the raw-pixel gate on: promote scored raw pixels on the same evaluation set.
    (raw_pixels,) = [r for r in promotion["reasons"] if r.startswith("k-NN gain over raw pixels")]
    assert "min +0.0500" in raw_pixels and "unknown" not in raw_pixels
    version = mlflow_client.get_model_version("dinoflow-backbone", promotion["challenger"])
    assert version.tags["promotion.decision"] == promotion["decision"]
    if promotion["decision"] == "promoted":
        assert mlflow_client.get_model_version_by_alias("dinoflow-backbone", "champion").version == version.version


def test_time_per_node_is_recorded_on_disk_and_in_mlflow(project_run, mlflow_client):
    times = json.loads((project_run[0] / "data" / "08_reporting" / "stage_times.json").read_text())
    assert {"build_manifest_node", "pretrain_node", "evaluate_node"} <= set(times["nodes"])
    assert 0 < sum(times["nodes"].values()) <= times["pipeline_seconds"]  # nodes run one after the other
    metrics = the_run(mlflow_client).data.metrics
    assert metrics["time/pretrain_node"] == pytest.approx(times["nodes"]["pretrain_node"])
    assert "Time per node:" in project_run[1]


def test_the_summary_names_what_was_written_pictures_included(project_run):
    summary = re.sub(r"[│\s]+", " ", project_run[1])  # the panel's borders and wrapped lines, as one line
    assert "metrics → data/08_reporting/metrics.json" in summary
    assert "evaluation_pictures → data/08_reporting/pictures/" in summary
    pictures = project_run[0] / "data" / "08_reporting" / "pictures"
    assert sorted(p.name for p in pictures.iterdir()) == ["attention_maps.png", "patch_pca.png", "training_curve.png"]


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium; `make test` does)")
def test_mlflow_ui_in_a_browser_opens_on_named_runs_and_shows_the_scorecard(project_run, mlflow_client, tmp_path):
    run = the_run(mlflow_client)
    version = mlflow_client.get_model_version_by_alias("dinoflow-backbone", "challenger")
    # The address the run summary and `make mlflow-ui` print, on the server instead of port 5000.
    address = re.search(r"Open the MLflow UI: make mlflow-ui, then (\S+)", project_run[1]).group(1)
    assert address == f"http://127.0.0.1:5000/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}" \
        "?workflowType=machine_learning"  # fmt: skip
    with mlflow_server(f"sqlite:///{project_run[0] / 'mlflow.db'}", tmp_path / "artifacts") as url:
        runs_page = rendered_page(f"{url}/#/experiments/{run.info.experiment_id}?workflowType=machine_learning")
        model_page = rendered_page(f"{url}/#/models/dinoflow-backbone/versions/{version.version}")
    assert run.info.run_name in runs_page and "synthetic/train" in runs_page, runs_page[-3000:]  # name, dataset
    assert "k-NN top-1" in model_page and "raw pixels" in model_page, model_page[-3000:]


def test_raw_data_is_dvc_tracked_and_summary_printed(project_run):
    project, output = project_run
    # A run leaves nothing for git but the DVC pointer of the raw data (data lives in DVC).
    assert git_changes(project) == {"data/01_raw/synthetic.dvc", "data/01_raw/.gitignore"}
    dvc_file = project / "data" / "01_raw" / "synthetic.dvc"
    assert dvc_file.exists() and ".dir" in dvc_file.read_text()
    assert "dinoflow run summary" in output and "models:/dinoflow-backbone@challenger" in output
    assert "Promotion:" in output


@pytest.mark.parametrize(
    "override,named",
    [
        ("data.sourse=/tmp", "sourse"),  # typo in a pipeline parameter
        ("evaluate.knn_k=many", "knn_k"),  # wrong type
        ("pretrain.optim.base_lrr=0.1", "pretrain.optim.base_lrr"),  # typo in the training config
    ],
)
def test_bad_parameters_stop_the_run_before_any_node_and_name_the_key(project_copy, override, named):
    result = kedro_run(project_copy, "--params", override)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert named in output
    assert "Running node" not in output


@pytest.mark.parametrize("name", ["01-data-and-validation", "02-compare-runs", "03-inspect-champion"])
def test_notebook_executes_headless_on_the_run(project_run, name, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("DINOFLOW_PROJECT", str(project_run[0]))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read(project_run[0] / "notebooks" / f"{name}.ipynb", as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3").execute()  # raises on any failing cell
    assert all(cell.outputs is not None for cell in notebook.cells if cell.cell_type == "code")
