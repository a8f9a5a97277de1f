"""DVC stages over the Kedro pipelines, for real in a temporary git repository."""

import json
import shutil

import pytest
import yaml

from tests.project_copy import make_project_copy, run_in

pytestmark = pytest.mark.slow

STAGES = ["ingest", "curate", "dataset", "pretrain", "evaluate", "register"]


def set_param(project, file: str, path: list[str], value) -> None:
    """Edit a parameter in its conf/base file: DVC only sees parameters that live in files."""
    target = project / "conf" / "base" / file
    params = yaml.safe_load(target.read_text())
    node = params
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    target.write_text(yaml.safe_dump(params))


def ran(result) -> list[str]:
    return [stage for stage in STAGES if f"Running stage '{stage}'" in result.stdout]


def test_repro_reruns_only_what_changed_and_data_survives_push_pull(tmp_path):
    project = make_project_copy(tmp_path / "project")
    set_param(project, "parameters_pretrain.yml", ["pretrain", "preset"], "ci")
    set_param(project, "parameters_data_ingestion.yml", ["data", "synthetic", "train_per_class"], 30)
    set_param(project, "parameters_data_ingestion.yml", ["data", "synthetic", "val_per_class"], 10)

    first = run_in(project, "dvc", "repro")
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    assert ran(first) == STAGES
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    assert set(lock["stages"]) == set(STAGES)
    assert lock["stages"]["pretrain"]["params"]["conf/base/parameters_pretrain.yml"]["pretrain"]["preset"] == "ci"
    metrics = json.loads(run_in(project, "dvc", "metrics", "show", "--json").stdout)
    assert 0.0 <= metrics[""]["data"]["data/08_reporting/metrics.json"]["data"]["knn_top1"] <= 1.0
    assert "training_curve.csv" in run_in(project, "dvc", "plots", "show", "--json").stdout

    second = run_in(project, "dvc", "repro")
    assert second.returncode == 0 and ran(second) == []

    set_param(project, "parameters_pretrain.yml", ["pretrain", "optim"], {"epochs": 1})
    third = run_in(project, "dvc", "repro")
    assert third.returncode == 0, third.stdout[-4000:] + third.stderr[-4000:]
    assert ran(third) == ["pretrain", "evaluate", "register"]

    # Raw data and stage outputs go to a local remote and come back into an empty workspace.
    assert run_in(project, "dvc", "add", "data/01_raw/synthetic").returncode == 0
    assert run_in(project, "dvc", "remote", "add", "-d", "local", str(tmp_path / "remote")).returncode == 0
    assert run_in(project, "dvc", "push").returncode == 0
    manifest = (project / "data" / "02_intermediate" / "image_manifest.parquet").read_bytes()
    shutil.rmtree(project / "data" / "01_raw" / "synthetic")
    (project / "data" / "02_intermediate" / "image_manifest.parquet").unlink()
    shutil.rmtree(project / ".dvc" / "cache")
    pulled = run_in(project, "dvc", "pull")
    assert pulled.returncode == 0, pulled.stdout[-2000:] + pulled.stderr[-2000:]
    assert (project / "data" / "02_intermediate" / "image_manifest.parquet").read_bytes() == manifest
    assert len(list((project / "data" / "01_raw" / "synthetic" / "images").rglob("*.png"))) == 10 * (
        30 + 10
    )  # 10 classes x (train + val)
