"""A training run's folder: named by its key (resolved config, dataset fingerprint, training code
and warm-start weights), holding its ``config.yaml`` and the staged warm-start source and
distillation teacher. Same key, same folder: an interrupted run resumes there, a finished one is reused."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import dinoflow
from dinoflow.config import save_config, to_dict
from dinoflow.contracts import PretrainPlan
from dinoflow.train.run_files import (
    BACKBONE_NAME,
    DISTILL_KEY,
    INIT_DIR,
    INIT_FILES,
    TEACHER_DIR,
    TEACHER_FILES,
    require_backbone_files,
)

# What training executes: a change here must not reuse a run trained by the old code.
TRAINING_CODE = ("config", "models", "losses", "train", "data/multicrop.py", "data/masking.py", "data/loader.py",
                 "data/shards.py")  # fmt: skip


def training_code_fingerprint(root: Path | None = None) -> str:
    """sha256 over the source of the training code (the same files the DVC pretrain stage tracks)
    under the package ``root`` (default: the installed ``dinoflow``)."""
    root = root or Path(dinoflow.__file__).parent
    digest = hashlib.sha256()
    for part in TRAINING_CODE:
        files = sorted((root / part).rglob("*.py")) if (root / part).is_dir() else [root / part]
        files = [f for f in files if f.exists()]
        for path in files:
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def run_key(config: dict[str, Any], dataset_fingerprint: str, code: str = "", init_weights: str = "") -> str:
    """Checkpoint directory name: same config, data, training code and warm-start weights (their
    sha256; "" for a cold start) → same directory → resume an interrupted run or reuse a finished
    one. The weights count, not only ``init_from``: ``@champion`` moves between runs."""
    payload = {"config": config, "data": dataset_fingerprint, "code": code, "init": init_weights}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def init_source(
    init_from: str, workdir: Path, files: tuple[str, ...] = INIT_FILES, key: str = "pretrain.init_from"
) -> tuple[Path, dict[str, str]]:
    """The folder holding the warm-start source's backbone files (a registered version's are
    downloaded into ``workdir``) and its lineage tags: ``parent_model_version`` (``<name>/<version>``,
    or the folder as given) and ``parent_weights_sha256``. ``files`` and ``key``: what the folder must
    hold and the config key its error names (a distillation teacher needs its heads too)."""
    if init_from.startswith("models:/"):
        from dinoflow.registry.mlflow_registry import download_backbone_files, registered_version  # torch: here only

        version = registered_version(init_from)
        folder, parent = download_backbone_files(version, workdir), f"{version.name}/{version.version}"
    else:
        folder, parent = Path(init_from), init_from
    require_backbone_files(folder, init_from, files, key)
    with (folder / BACKBONE_NAME).open("rb") as f:
        weights_sha256 = hashlib.file_digest(f, "sha256").hexdigest()
    return folder, {"parent_model_version": parent, "parent_weights_sha256": weights_sha256}


def stage_init(source: Path, output_dir: Path, subdir: str = INIT_DIR, files: tuple[str, ...] = INIT_FILES) -> Path:
    """Copy the source's ``files`` (``config.yaml`` and weights) into ``<output_dir>/<subdir>``, where
    the training process reads them (pods too: the run folder is on the checkpoints claim). Done once
    per run folder; the copy is renamed into place whole, so a present folder is complete."""
    staged = output_dir / subdir
    if not staged.is_dir():
        output_dir.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=f".{subdir}-", dir=output_dir))
        for name in files:
            shutil.copyfile(source / name, partial / name)
        partial.rename(staged)
    return staged


def _sources(cfg, workdir: Path) -> tuple[dict[str, str], list[tuple[Path, str, tuple[str, ...]]]]:
    """Lineage tags and the (folder, subdir, files) to stage of the warm-start source and of the
    distillation teacher; the teacher's tags are ``distilled_from`` and ``teacher_weights_sha256``."""
    lineage, sources = {}, []
    if cfg.init_from is not None:  # continual pretraining: the process reads <run folder>/init
        folder, lineage = init_source(cfg.init_from, workdir / INIT_DIR)
        sources.append((folder, INIT_DIR, INIT_FILES))
    if cfg.distill_from is not None:  # distillation: the process reads its frozen teacher in <run folder>/teacher
        folder, teacher = init_source(cfg.distill_from, workdir / TEACHER_DIR, TEACHER_FILES, DISTILL_KEY)
        lineage |= {"distilled_from": teacher["parent_model_version"],
                    "teacher_weights_sha256": teacher["parent_weights_sha256"]}  # fmt: skip
        sources.append((folder, TEACHER_DIR, TEACHER_FILES))
    return lineage, sources


def plan_run(cfg, dataset_fingerprint: str, output_root: Path, tuned: dict[str, str] | None = None) -> PretrainPlan:
    """The run's folder under ``output_root``, named by its key, with its ``config.yaml`` and the
    staged warm-start source and distillation teacher (their weights are part of the key).
    ``tuned``: the tuning study and trial whose values ``cfg`` holds (tags of the MLflow run)."""
    config = to_dict(cfg)
    with tempfile.TemporaryDirectory(prefix="dinoflow-init-") as workdir:
        lineage, sources = _sources(cfg, Path(workdir))
        weights = lineage.get("parent_weights_sha256", "") + lineage.get("teacher_weights_sha256", "")
        key = run_key(config, dataset_fingerprint, training_code_fingerprint(), weights)
        output_dir = output_root / key
        for source, subdir, files in sources:
            stage_init(source, output_dir, subdir, files)
    config_path = save_config(cfg, output_dir / "config.yaml")
    return PretrainPlan(key=key, output_dir=str(output_dir), config_path=str(config_path), preset=cfg.preset,
                        config=config, lineage=lineage, tuned=tuned or {})  # fmt: skip
