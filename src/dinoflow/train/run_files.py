"""What a training run's folder holds, by name: one place for the training process and the pipeline
nodes that read or stage those files. Free of torch on purpose: ``kedro run`` imports every node
module to build its graph, and a run that stops before training should not pay for torch."""

from __future__ import annotations

from pathlib import Path

CHECKPOINT_NAME = "checkpoint.pt"
BACKBONE_NAME = "teacher_backbone.safetensors"
# The backbone at random init, before any warm start (seeded by run.seed): evaluation's baseline.
RANDOM_INIT_NAME = "random_init_backbone.safetensors"
BACKBONE_FILES = {"teacher": BACKBONE_NAME, "random_init": RANDOM_INIT_NAME}  # load_backbone's `which`
# The teacher's DINO head (and iBOT patch head when separate): what a distillation teacher's targets need.
HEAD_NAME = "teacher_head.safetensors"
INIT_DIR = "init"  # the staged copy of a warm-start source's backbone files
INIT_FILES = ("config.yaml", BACKBONE_NAME)
TEACHER_DIR = "teacher"  # the staged copy of a distillation teacher's files
TEACHER_FILES = ("config.yaml", BACKBONE_NAME, HEAD_NAME)
DISTILL_KEY = "pretrain.distill_from"  # the config key that names a distillation teacher


def require_backbone_files(
    folder: Path, init_from: str, files: tuple[str, ...] = INIT_FILES, key: str = "pretrain.init_from"
) -> Path:
    """``folder`` when it holds ``files`` (by default ``config.yaml`` and the teacher backbone's
    safetensors weights); ``key`` is the config key the error names (``pretrain.distill_from`` too)."""
    missing = [name for name in files if not (Path(folder) / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{key}={init_from!r}: {folder} lacks {' and '.join(missing)}; {key} needs a folder "
            f"holding {', '.join(files)}, as a training run writes (data/06_models/pretrain/<run key>/) or a registered "
            f"version stores (backbone_files/), or a registry URI models:/<name>@<alias> run through the pretrain pipeline"
        )
    return Path(folder)
