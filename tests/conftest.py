"""Shared fixtures: tiny synthetic data made by the tests themselves (no downloads)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from dinoflow.config import resolve_config
from dinoflow.data.synthetic import SyntheticSpec, generate
from tests.project_copy import PROJECT_ROOT, new_mlflow_store  # noqa: E402,F401

os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs one worker per core: each worker, and every process it starts (kedro,
    # torchrun ranks), computes on one thread. More threads than cores spin against each other
    # (OpenMP waits actively).
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


# The files that took longest under `make test` (each over 75 s of one worker: the kill chain,
# DVC repro/push/pull, the registry outage, the end-to-end module): they go first of all.
LONGEST_FILES = ("faults/test_pipeline_killed.py", "test_dvc_stages.py", "faults/test_registry_outage.py",
                 "test_end_to_end.py")  # fmt: skip


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest files first, then the other files holding slow tests (order kept otherwise):
    under ``make test``'s workers the long files start early instead of running alone at the end."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    tests_dir = Path(__file__).parent

    def rank(item: pytest.Item) -> int:
        relative = item.path.relative_to(tests_dir).as_posix() if item.path.is_relative_to(tests_dir) else ""
        return 0 if relative in LONGEST_FILES else 1 if item.path in slow_files else 2

    items.sort(key=rank)


TINY_SPEC = SyntheticSpec(num_classes=4, train_per_class=12, val_per_class=6, image_size=32, seed=3)


@pytest.fixture(scope="session")
def tiny_dataset_root(tmp_path_factory) -> Path:
    """4 classes x (12 train + 6 val) images of 32 px, with masks."""
    root = tmp_path_factory.mktemp("tiny") / "synthetic"
    generate(TINY_SPEC, root)
    return root


@pytest.fixture(scope="session")
def planted(tmp_path_factory) -> dict:
    """A generated folder with planted near-copies and its answer key (``tests/planted.py``)."""
    from tests.planted import planted_folder

    return planted_folder(tmp_path_factory.mktemp("planted") / "folder")


@pytest.fixture
def tiny_config():
    """A seconds-long pretraining config (fp32, deterministic on CPU)."""
    section = {
        "preset": "custom",
        "model": {"arch": "vit_tiny_patch16_224", "patch_size": 8, "embed_dim": 32, "depth": 2,
                  "num_heads": 2, "drop_path_rate": 0.0, "fused_attn": False},
        "head": {"out_dim": 64, "hidden_dim": 32, "bottleneck_dim": 16},
        "crops": {"global_size": 16, "local_size": 8, "local_number": 2},
        "loss": {"koleo_weight": 0.1},
        "optim": {"epochs": 2, "batch_size_per_rank": 8, "warmup_epochs": 1},
        "run": {"precision": "fp32", "log_every": 1, "checkpoint_every": 2},
    }  # fmt: skip
    return resolve_config(section, {})


@pytest.fixture
def mlflow_tmp(tmp_path, monkeypatch):
    """An isolated sqlite MLflow store with an active run, as the pipeline hook provides."""
    from dinoflow.tracking import mlflow_run

    monkeypatch.setenv("MLFLOW_TRACKING_URI", new_mlflow_store(tmp_path / "mlflow.db"))
    run_id = mlflow_run.start_run(tmp_path, "test", "test-run", tags={"git_sha": "test"})
    yield run_id
    mlflow_run.end_run()


def shards_of(root: Path, output_dir: Path) -> dict:
    """The generated folder ``root`` packed into train/val shards at 32 px (the dataset index, with ``dir``)."""
    from dinoflow.data.manifest import build_manifest
    from dinoflow.data.shards import ImageRecord, build_dataset

    rows = build_manifest(root, progress=False)
    classes = sorted({r["label"] for r in rows})
    records: dict[str, list] = {}
    for r in rows:
        records.setdefault(r["split"], []).append(
            ImageRecord(root / r["path"], classes.index(r["label"]), root / r["mask_path"])
        )
    fingerprint_rows = [(r["path"], r["sha256"], r["label"], r["split"]) for r in rows]
    return build_dataset(records, classes, output_dir, fingerprint_rows, max_side=32, workers=1)


@pytest.fixture(scope="session")
def tiny_shards(tiny_dataset_root, tmp_path_factory) -> dict:
    """The tiny dataset packed into train/val shards at 32 px (the dataset index, with ``dir``)."""
    return shards_of(tiny_dataset_root, tmp_path_factory.mktemp("shards"))
