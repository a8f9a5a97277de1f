"""The embed pipeline on a generated folder with a backbone registered in a temporary sqlite
registry: with Kedro's runner (rows = what the served model answers, broken files quarantined,
search finds each image first), and as a real `kedro run` killed after its first chunk, then
rerun: only the missing rows are computed and the result equals an uninterrupted run's."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from kedro.io import DataCatalog

from dinoflow.config.pipeline_params import EmbedParams
from dinoflow.curation.embedding_store import EMBEDDINGS_FILE, PARTS_DIR, read_embeddings
from dinoflow.data.synthetic import SyntheticSpec, generate
from dinoflow.datasets import AtomicCSVDataset, AtomicJSONDataset
from dinoflow.pipelines.embed import create_pipeline as embed_pipeline
from dinoflow.search import search
from tests.pipelines.test_curate_pipeline import register_tiny_backbone
from tests.pipelines.test_data_pipelines import data_params, validation_params
from tests.project_copy import bin_path, command_env, make_project_copy, run_in
from tests.runner import run_pipeline

MODEL = "models:/embed-test@champion"


def image_folder(root: Path, per_class: int) -> Path:
    """Generated shapes (4 classes, 32 px) in class folders, as a user's folder might be."""
    generate(SyntheticSpec(num_classes=4, train_per_class=per_class, val_per_class=2, image_size=32, seed=5), root)
    return root


@pytest.fixture
def folder(tmp_path) -> Path:
    """40 images and one file that is not an image (quarantined: 2.4% <= the 5% allowed)."""
    root = image_folder(tmp_path / "folder", per_class=8)
    (root / "images" / "train" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return root


def run_embed(tmp_path: Path, source: Path | None, **embed) -> dict:
    files = tmp_path / "reports"  # as conf/base/catalog.yml stores the embed outputs
    catalog = DataCatalog({
        "embed_quarantine_report": AtomicCSVDataset(filepath=str(files / "quarantine.csv"), save_args={"index": False}),
        "embed_validation_report": AtomicJSONDataset(filepath=str(files / "validation_report.json")),
        "embed_report": AtomicJSONDataset(filepath=str(files / "embed_report.json")),
    })  # fmt: skip
    catalog["params:data"] = data_params(tmp_path)
    catalog["params:validation"] = validation_params(tmp_path, 0.05)
    catalog["params:embed"] = EmbedParams(**{
        "source": source and str(source), "model": MODEL, "output_dir": str(tmp_path / "embed"), "batch_size": 8,
        "ingest_cache": str(tmp_path / "embed_cache.json"), "docs_root": str(tmp_path / "docs"), **embed,
    })  # fmt: skip
    run_pipeline(embed_pipeline(), catalog)
    return {n: catalog.load(n) for n in ("embed_report", "embed_quarantine_report")}


def test_every_valid_image_is_embedded_as_served_and_finds_itself_first(folder, tmp_path, mlflow_tmp, tiny_config):
    register_tiny_backbone(tiny_config, tmp_path / "files", "embed-test")
    outputs = run_embed(tmp_path, folder)
    report, quarantine = outputs["embed_report"], outputs["embed_quarantine_report"]
    assert quarantine["path"].tolist() == ["images/train/broken.png"]
    assert (report["count"], report["computed"], report["reused"]) == (40, 40, 0)
    assert report["model_version"] == "models:/embed-test/1" and report["index"] == "exact"
    assert report["preprocessing"] == {"image_size": 16, "max_side": 16, "max_aspect": 3.0, "background": [255] * 3}
    rows, vectors = read_embeddings(tmp_path / "embed" / EMBEDDINGS_FILE)
    assert list(rows.columns) == ["path", "sha256", "model_version"] and len(rows) == 40 and vectors.shape == (40, 32)
    served = mlflow.pyfunc.load_model(MODEL).predict(pd.DataFrame({"path": [str(folder / p) for p in rows["path"]]}))
    np.testing.assert_allclose(vectors, served, rtol=0, atol=1e-5)  # the rows are what serving answers
    assert mlflow.get_run(mlflow_tmp).data.metrics["embed.computed"] == 40

    queries = [folder / rows["path"][i] for i in (0, 17, 39)]
    for query, hits in zip(queries, search(tmp_path / "embed", queries, 3), strict=True):
        assert hits[0]["path"] == str(query) and hits[0]["similarity"] == pytest.approx(1.0, abs=1e-5)
        assert len(hits) == 3 and hits[1]["similarity"] <= hits[0]["similarity"]

    again = run_embed(tmp_path, folder)["embed_report"]  # nothing new: nothing computed
    assert (again["computed"], again["reused"]) == (0, 40)


def test_a_missing_folder_or_model_is_named(folder, tmp_path, mlflow_tmp):
    with pytest.raises(ValueError, match="embed.source is not set: the embed pipeline needs the folder"):
        run_embed(tmp_path, None)
    with pytest.raises(LookupError, match="has no models:/nothing-here@champion"):
        run_embed(tmp_path, folder, model="models:/nothing-here@champion")


def start_kedro(project: Path, params: str, env: dict, log: Path) -> subprocess.Popen:
    with log.open("w") as out:
        return subprocess.Popen([bin_path("kedro"), "run", "--pipeline", "embed", "--params", params], cwd=project,
                                env={**command_env(), **env, "PYTHONUNBUFFERED": "1"}, stdout=out,
                                stderr=subprocess.STDOUT)  # fmt: skip


@pytest.mark.slow
def test_a_killed_run_resumes_with_only_the_missing_rows(tmp_path, mlflow_tmp, tiny_config):
    register_tiny_backbone(tiny_config, tmp_path / "files", "embed-test")
    source = image_folder(tmp_path / "folder", per_class=48)  # 200 images, 50 chunks of 4
    project = make_project_copy(tmp_path / "project")
    env = {"MLFLOW_TRACKING_URI": os.environ["MLFLOW_TRACKING_URI"], "OMP_NUM_THREADS": "1"}
    params = f"embed.source={source},embed.model={MODEL},embed.batch_size=4,embed.flush_every=1,data.workers=1"
    output = project / "data" / "07_model_output" / "embed"

    killed = start_kedro(project, params, env, tmp_path / "killed.log")
    deadline = time.monotonic() + 300
    while not list((output / PARTS_DIR).glob("part-*.parquet")):  # the first chunk is on disk
        assert killed.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "no chunk was written in 300 s"
        time.sleep(0.02)
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait()
    assert not (output / EMBEDDINGS_FILE).exists()
    flushed = sum(pq.read_metadata(p).num_rows for p in (output / PARTS_DIR).glob("part-*.parquet"))
    assert 0 < flushed < 200

    resumed = run_in(project, "kedro", "run", "--pipeline", "embed", "--params", params, env=env)
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-4000:]
    report = json.loads((project / "data" / "08_reporting" / "embed" / "embed_report.json").read_text())
    assert (report["computed"], report["reused"]) == (200 - flushed, flushed)
    assert not (output / PARTS_DIR).exists()

    # Uninterrupted, the rows are what the served model answers (the first test runs the pipeline whole).
    rows, vectors = read_embeddings(output / EMBEDDINGS_FILE)
    assert sorted(rows["path"]) == sorted(str(p.relative_to(source)) for p in source.rglob("images/**/*.png"))
    served = mlflow.pyfunc.load_model(MODEL).predict(pd.DataFrame({"path": [str(source / p) for p in rows["path"]]}))
    np.testing.assert_allclose(vectors, served, rtol=0, atol=1e-5)

    query = source / rows["path"][123]
    found = run_in(project, "python", "-m", "dinoflow.search", "--index", str(output), "--image", str(query),
                   "-k", "3", env=env)  # fmt: skip
    assert found.returncode == 0, found.stderr[-3000:]
    first = found.stdout.splitlines()[1].split("\t")
    assert first[0] == "1" and float(first[1]) == pytest.approx(1.0, abs=1e-4) and first[2] == str(query)
