"""The product's claim, as a test that can fail: pretraining makes a backbone better than it was.

A tiny backbone is pretrained for a few seconds on a small generated shape set and its teacher's
k-NN top-1 (the evaluate node's protocol) must beat the same network at its random initialisation
by ``MARGIN``. The margin comes from measured seed noise (see ``MEASURED``); no clock is involved.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from dinoflow.config import resolve_config
from dinoflow.config.loading import deep_merge
from dinoflow.data.shards import ShardReader
from dinoflow.data.synthetic import SyntheticSpec, generate
from dinoflow.eval.suite import EvalSet, EvalSettings, score_backbone
from dinoflow.train.builders import build_backbone_from_config
from dinoflow.train.checkpoint import load_checkpoint, teacher_backbone_state
from dinoflow.train.distributed import DistEnv
from dinoflow.train.loop import train
from tests.project_copy import PROJECT_ROOT
from tests.train.test_loop import ListSink

pytestmark = pytest.mark.slow

# Easier than the demo data (centred, large, no clutter) so that seconds of training show learning.
SPEC = SyntheticSpec(num_classes=4, train_per_class=100, val_per_class=50, image_size=32, min_contrast=0.3,
                     light_objects=True, texture_strength=0.1, clutter_strokes=0, position_jitter=0.3,
                     min_scale=0.38, seed=5)  # fmt: skip
CONFIG = {
    "preset": "demo",
    "optim": {"epochs": 20, "batch_size_per_rank": 64, "warmup_epochs": 2},
    "run": {"precision": "fp32", "loader_workers": 0, "log_every": 50, "checkpoint_every": 1000},
}
# Gains (trained - random init, k-NN top-1 on 200 val images) measured for seeds 0, 1, 2 with this
# data and config (about 40 s each on 2 cores). One val image is 0.005, and the binomial noise of a
# figure near 0.5 on 200 images is about 0.035: the margin sits one such step under the smallest
# gain measured, while a run that learns nothing lands near 0.
MEASURED = {0: 0.16, 1: 0.2, 2: 0.165}  # demo preset with its full hue jitter (0.09, 0.16, 0.115 before)
MARGIN = 0.12  # 0.05 before


@pytest.fixture(scope="module")
def shape_shards(tmp_path_factory) -> dict:
    from dinoflow.data.manifest import build_manifest
    from dinoflow.data.shards import ImageRecord, build_dataset

    root = tmp_path_factory.mktemp("shapes") / "synthetic"
    generate(SPEC, root, workers=1)
    rows = build_manifest(root, progress=False)
    classes = sorted({r["label"] for r in rows})
    records: dict[str, list] = {}
    for r in rows:
        records.setdefault(r["split"], []).append(ImageRecord(root / r["path"], classes.index(r["label"])))
    fingerprint = [(r["path"], r["sha256"], r["label"], r["split"]) for r in rows]
    return build_dataset(records, classes, tmp_path_factory.mktemp("ds"), fingerprint, max_side=32, workers=1)


def knn_gain(shards: dict, out: Path, seed: int) -> float:
    """Pretrain with ``seed``; the teacher's k-NN top-1 minus its random-init twin's."""
    dataset = Path(shards["dir"])
    params = yaml.safe_load((PROJECT_ROOT / "conf" / "base" / "parameters_pretrain.yml").read_text())
    section = deep_merge(CONFIG, {"run": {"seed": seed}})
    cfg = resolve_config(section, params["pretrain_presets"])
    train(cfg, dataset, out, ListSink(), DistEnv(), torch.device("cpu"))
    settings = EvalSettings(image_size=cfg.crops.global_size)
    data = EvalSet(ShardReader.from_index(dataset, "train"), ShardReader.from_index(dataset, "val"),
                   num_classes=SPEC.num_classes, image_size=32, with_masks=False)  # fmt: skip
    trained = build_backbone_from_config(cfg, drop_path=False)
    trained.load_state_dict(teacher_backbone_state(load_checkpoint(out / "checkpoint.pt")))
    scores = [score_backbone(b, data, settings, linear=False)["knn"]["top1"]
              for b in (trained, build_backbone_from_config(cfg, drop_path=False))]  # fmt: skip
    return scores[0] - scores[1]


def test_pretraining_beats_the_random_init_twin(shape_shards, tmp_path):
    gain = knn_gain(shape_shards, tmp_path, seed=0)
    assert gain >= MARGIN, f"k-NN gain over random init {gain:+.3f} < {MARGIN} (measured: {MEASURED})"
