"""Warm start for continual pretraining (``pretrain.init_from``): a fresh run's student and teacher
backbones both begin as a trained teacher backbone (a run folder's, or a registered version's).

Only the backbone is loaded. A registered version stores nothing else, so the DINO and iBOT heads,
the loss centres, the optimizer state and every schedule (warm-ups included) start as in a cold
run. A resumed run never warm-starts: its checkpoint holds every weight (``loop.train``).

The training process does not talk to the registry: the pretrain pipeline copies the source's
``config.yaml`` and weights into ``<output>/init`` (where pods on a cluster see it too) and the
process reads them there; run by hand, ``init_from`` may name a folder directly.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import torch
from torch import nn

from dinoflow.config import ConfigError, PretrainConfig, to_dict
from dinoflow.train.builders import load_backbone
from dinoflow.train.run_files import INIT_DIR, INIT_FILES, require_backbone_files

log = logging.getLogger(__name__)

RECORD_NAME = "warm_start.json"  # what a warm-started run began from (digests of the loaded weights)
# The keys that shape the backbone: the source's values must be this config's (no resizing is done).
ARCHITECTURE_KEYS = ("model.arch", "model.patch_size", "model.embed_dim", "model.depth", "model.num_heads",
                     "model.reg_tokens", "model.layer_scale_init", "model.mlp", "model.stem", "crops.global_size")  # fmt: skip


def init_folder(
    init_from: str | None,
    output_dir: Path,
    subdir: str = INIT_DIR,
    files: tuple[str, ...] = INIT_FILES,
    key: str = "pretrain.init_from",
) -> Path | None:
    """The folder a fresh run reads ``key``'s source from: ``<output_dir>/<subdir>`` when the pretrain
    pipeline staged the source there, else ``init_from`` itself (a folder); None when it is None."""
    if init_from is None:
        return None
    staged = Path(output_dir) / subdir
    if staged.is_dir():
        return require_backbone_files(staged, init_from, files, key)
    if init_from.startswith("models:/"):
        raise ConfigError(
            f"{key}={init_from!r} names a registered model and the training process does not read the "
            f"registry: run it through the pretrain pipeline (`kedro run`), which copies the version's files "
            f"into {staged}, or set {key} to a folder holding {', '.join(files)}"
        )
    return require_backbone_files(Path(init_from), init_from, files, key)


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 over the names, dtypes, shapes and bytes of a state dict's tensors (any device)."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _shape_differences(source: nn.Module, target: nn.Module) -> list[str]:
    there, here = source.state_dict(), target.state_dict()
    shape = lambda t: "absent" if t is None else str(tuple(t.shape))  # noqa: E731
    keys = [*there, *(k for k in here if k not in there)]  # the network's order: embeddings first
    lines = [f"{k} is {shape(there.get(k))} there and {shape(here.get(k))} here" for k in keys
             if k not in there or k not in here or there[k].shape != here[k].shape]  # fmt: skip
    heads = source.blocks[0].attn.num_heads, target.blocks[0].attn.num_heads
    if heads[0] != heads[1]:  # same shapes, another function: loading would silently change the network
        lines.append(f"attention heads are {heads[0]} there and {heads[1]} here")
    return lines


def _architecture(cfg: PretrainConfig) -> dict[str, object]:
    values = to_dict(cfg)
    return {key: values[key.split(".")[0]][key.split(".")[1]] for key in ARCHITECTURE_KEYS}


def warm_start(student: nn.Module, teacher: nn.Module, folder: Path, cfg: PretrainConfig) -> dict[str, str]:
    """Load the teacher backbone stored in ``folder`` into ``student.backbone`` and
    ``teacher.backbone`` (same weights in both; heads untouched, i.e. freshly initialised).

    Raises:
        ConfigError: the source's backbone has other tensor shapes (e.g. ``pos_embed`` (1, 17, 128)
            vs (1, 17, 64)) or attention heads than the configured one; the message names both,
            and the ``pretrain.*`` keys whose values differ.

    Returns:
        the run's warm-start record: ``init_from``, ``folder`` and the :func:`state_digest` of the
        source, student and teacher backbones right after loading (all three equal).
    """
    source, source_cfg = load_backbone(folder)
    differences = _shape_differences(source, student.backbone)
    if differences:
        there, here = _architecture(source_cfg), _architecture(cfg)
        keys = [f"pretrain.{k}: {there[k]!r} there, {here[k]!r} here" for k in ARCHITECTURE_KEYS if there[k] != here[k]]
        more = f" (and {len(differences) - 3} more)" if len(differences) > 3 else ""
        raise ConfigError(
            f"pretrain.init_from={cfg.init_from!r}: the backbone in {folder} does not fit the configured one: "
            f"{'; '.join(differences[:3])}{more}. The configs differ in {'; '.join(keys) or 'no architecture key'}. "
            "A warm start loads the weights as they are, so pretrain.model.* and pretrain.crops.global_size (which "
            "sizes the position embedding) must match the source's"
        )
    state = source.state_dict()
    student.backbone.load_state_dict(state, strict=True)
    teacher.backbone.load_state_dict(state, strict=True)
    log.info("warm start: student and teacher backbones loaded from %s (%s); heads freshly initialised",
             folder, cfg.init_from)  # fmt: skip
    return {
        "init_from": str(cfg.init_from),
        "folder": str(folder),
        "source_backbone_sha256": state_digest(state),
        "student_backbone_sha256": state_digest(student.backbone.state_dict()),
        "teacher_backbone_sha256": state_digest(teacher.backbone.state_dict()),
    }
