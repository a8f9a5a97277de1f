"""The evaluation protocol that the ``evaluate`` parameters describe: its name, its settings and the
evaluation set of a dataset. Evaluation, registration and promotion all score with these, so a
recorded score and a fresh one are comparable when their protocol names match.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

from dinoflow.config.pipeline_params import EvaluateParams
from dinoflow.contracts import DatasetIndex

if TYPE_CHECKING:  # torch: imported when settings or a set are built, not to name a protocol
    from dinoflow.eval.suite import EvalSet, EvalSettings


def evaluation_protocol(evaluate: EvaluateParams) -> str:
    """Names the scoring protocol (k, temperature, probe epochs, batch): scores recorded under the
    same protocol on the same dataset fingerprint are comparable without re-scoring. The image
    size is the backbone's own (its config), so it is not part of this name."""
    fields = evaluate.model_dump(exclude={"pictures"})
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]


def eval_settings(evaluate: EvaluateParams, image_size: int) -> EvalSettings:
    from dinoflow.eval.suite import EvalSettings

    return EvalSettings(
        image_size=image_size,
        k=evaluate.knn_k,
        ks=tuple(evaluate.knn_ks),
        temperature=evaluate.knn_temperature,
        linear_epochs=evaluate.linear_epochs,
        segmentation_epochs=evaluate.segmentation_epochs,
        segmentation_lr=evaluate.segmentation_lr,
        batch_size=evaluate.batch_size,
    )


def eval_set(dataset_index: DatasetIndex, settings: EvalSettings) -> EvalSet:
    """The dataset's train/val splits as an evaluation set (masks when both splits have them)."""
    from dinoflow.data.shards import ShardReader
    from dinoflow.eval.suite import EvalSet

    if not dataset_index.classes:
        raise ValueError("k-NN evaluation needs labels: use class sub-folders (see README, 'Bring your own images')")
    root = Path(dataset_index.dir)
    return EvalSet(
        ShardReader.from_index(root, "train"),
        ShardReader.from_index(root, "val"),
        num_classes=len(dataset_index.classes),
        image_size=settings.image_size,
        with_masks=dataset_index.has_masks(),
    )
