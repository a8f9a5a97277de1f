"""Promotion: score @challenger and @champion on the same evaluation set, apply the gates
(``registry.gates``), record the decision on the version and move ``champion`` when it passes.

A version's own evaluation (the scores linked to its logged model, as numbers) is reused when its
tags say it was made on the same dataset fingerprint under the same protocol; anything else is
rebuilt from its registered files and re-scored.
Scoring code (torch, timm) is imported where a version is re-scored: ``kedro run`` imports every node."""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

from dinoflow.config import load_config_file
from dinoflow.config.pipeline_params import EvaluateParams, PromoteParams
from dinoflow.contracts import DatasetIndex
from dinoflow.eval.protocol import eval_set, eval_settings, evaluation_protocol
from dinoflow.registry.gates import Decision, Evidence, decide
from dinoflow.registry.mlflow_registry import (
    CHALLENGER,
    CHAMPION,
    download_backbone_files,
    record_decision,
    recorded_scores,
    registered_version,
    version_by_alias,
)
from dinoflow.tracking import mlflow_run

log = logging.getLogger(__name__)


def decide_promotion(
    model_name: str, dataset_index: DatasetIndex, evaluate: EvaluateParams, promote: PromoteParams
) -> dict[str, Any]:
    """Decide on @challenger against @champion (or, first, its random-init twin); returns the
    decision record (``model``, ``challenger``, ``champion_before``, ``champion``, ``decision``,
    ``reasons``, ``scores`` per role, ``scored``: recorded or re-scored)."""
    challenger, champion = _contenders(model_name)
    if champion is not None and champion.version == challenger.version:
        log.info("%s v%s is already @%s; nothing to decide", model_name, challenger.version, CHAMPION)
        return {"model": model_name, "challenger": challenger.version, "champion": challenger.version,
                "decision": "unchanged"}  # fmt: skip
    scores, origin = _scores(challenger, champion, dataset_index, evaluate)
    decision = _decide(challenger, champion, scores, origin, dataset_index, evaluate, promote)
    record_decision(model_name, challenger.version, champion.version if champion else None, decision,
                    {"promotion.evaluated_on": dataset_index.fingerprint,
                     "promotion.run_id": mlflow_run.active_run_id()})  # fmt: skip
    log.info("%s v%s %s", model_name, challenger.version, decision.summary)
    return _record(model_name, challenger, champion, decision, scores, origin)


def _score(version, dataset_index, evaluate: EvaluateParams, workdir: Path, random_init: bool = False) -> dict:
    """Rebuild a registered version from its ``backbone_files`` and score it (k-NN, segmentation)."""
    files = download_backbone_files(version, workdir / f"v{version.version}")
    return _score_files(files, dataset_index, evaluate, f"v{version.version}", random_init)


def _score_files(files: Path, dataset_index, evaluate: EvaluateParams, name: str, random_init: bool = False) -> dict:
    """Score the backbone a folder of ``config.yaml`` + weights describes (a version's files or a run folder)."""
    from dinoflow.eval.suite import score_backbone
    from dinoflow.train.builders import load_backbone

    backbone, cfg = load_backbone(files, "random_init" if random_init else "teacher")
    settings = eval_settings(evaluate, cfg.crops.global_size)
    name += " random init" if random_init else ""
    return score_backbone(backbone, eval_set(dataset_index, settings), settings, name, linear=False)


def _teacher(challenger, dataset_index, evaluate: EvaluateParams) -> tuple[Evidence, dict] | None:
    """The distillation teacher of a distilled challenger (its ``distilled_from`` tag: ``<name>/<version>``
    or a run folder) and its scores on this evaluation set (recorded or re-scored); None if not distilled."""
    source = challenger.tags.get("distilled_from")
    if source is None:
        return None
    name, _, number = source.rpartition("/")
    registered = bool(name) and number.isdigit() and not Path(source).is_dir()
    with tempfile.TemporaryDirectory() as tmp:
        if registered:
            version = registered_version(f"models:/{source}")
            scores = _recorded(version, dataset_index.fingerprint, evaluation_protocol(evaluate))
            scores = scores or _score(version, dataset_index, evaluate, Path(tmp))
        else:
            scores = _score_files(Path(source), dataset_index, evaluate, source)
    return Evidence(source, scores["knn"]["top1"], scores.get("seg"), True, False), scores


def _recorded_here(version, fingerprint: str, protocol: str) -> dict[str, float]:
    """The scores linked to the version's logged model when they were measured on this dataset
    fingerprint under this evaluation protocol (the version's tags say where); otherwise empty."""
    tags = version.tags
    if tags.get("data_fingerprint") != fingerprint or tags.get("evaluation_protocol") != protocol:
        return {}
    return recorded_scores(version)


def _recorded(version, fingerprint: str, protocol: str, random_init: bool = False) -> dict | None:
    """The version's recorded k-NN (and segmentation) scores, of the trained or the random-init
    backbone, when they count here (``_recorded_here``); otherwise None (re-score)."""
    scores = _recorded_here(version, fingerprint, protocol)
    suffix = "_random_init" if random_init else ""
    knn, seg = scores.get(f"knn_top1{suffix}"), scores.get(f"seg_miou{suffix}")
    if knn is None:
        return None
    return {"knn": {"top1": knn}, **({"seg": seg} if seg is not None else {})}


def _scores(challenger, champion, dataset_index, evaluate: EvaluateParams) -> tuple[dict, dict]:
    """Scores of the challenger and of the champion (or, for a first promotion, of the
    challenger's random-init twin), each recorded or re-scored; and which it was."""
    roles = {"challenger": (challenger, False)}
    roles.update({"champion": (champion, False)} if champion is not None else {"random_init": (challenger, True)})
    fingerprint, protocol = dataset_index.fingerprint, evaluation_protocol(evaluate)
    scores, origin = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for role, (version, random_init) in roles.items():
            scores[role] = _recorded(version, fingerprint, protocol, random_init)
            origin[role] = "recorded" if scores[role] is not None else "re-scored"
            if scores[role] is None:
                scores[role] = _score(version, dataset_index, evaluate, Path(tmp), random_init)
    return scores, origin


def _raw_pixels_knn(challenger, dataset_index, evaluate: EvaluateParams) -> float:
    """k-NN top-1 of standardised raw pixels at the challenger's evaluation size: the value its
    run recorded on this dataset and protocol, else computed (no network involved, seconds)."""
    recorded = _recorded_here(challenger, dataset_index.fingerprint, evaluation_protocol(evaluate))
    if "knn_top1_raw_pixels" in recorded:
        return recorded["knn_top1_raw_pixels"]
    from dinoflow.eval.suite import raw_pixel_knn

    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config_file(download_backbone_files(challenger, Path(tmp)) / "config.yaml")
    settings = eval_settings(evaluate, cfg.crops.global_size)
    return raw_pixel_knn(eval_set(dataset_index, settings), settings)["top1"]


def _evidence(version, scores: dict) -> Evidence:
    return Evidence(
        version=version.version,
        knn_top1=scores["knn"]["top1"],
        seg_miou=scores.get("seg"),
        validation_passed=version.tags.get("validation_status") == "passed",
        collapsed=version.tags.get("collapsed", "false") == "true",
        labels=tuple(json.loads(version.tags["label_set"])) if "label_set" in version.tags else None,
    )


def _contenders(name: str) -> tuple[Any, Any]:
    """The @challenger version (required) and the @champion version (None before the first promotion)."""
    challenger = version_by_alias(name, CHALLENGER)
    if challenger is None:
        raise ValueError(f"model '{name}' has no @{CHALLENGER}: run the register pipeline first")
    return challenger, version_by_alias(name, CHAMPION)


def _decide(challenger, champion, scores: dict, origin: dict, dataset_index, evaluate: EvaluateParams,
            promote: PromoteParams) -> Decision:  # fmt: skip
    """Apply the gates; the distillation teacher's scores join ``scores`` and ``origin`` when its gate is on."""
    gates = promote.gates
    teacher = _teacher(challenger, dataset_index, evaluate) if gates.min_share_of_teacher_knn else None
    if teacher is not None:
        scores["teacher"], origin["teacher"] = teacher[1], teacher[0].version
    log.info("scores: %s", ", ".join(f"{role} {how}" for role, how in origin.items()))
    raw_pixels = gates.min_gain_over_raw_pixels is not None
    return decide(
        _evidence(challenger, scores["challenger"]),
        _evidence(champion, scores["champion"]) if champion is not None else None,
        gates,
        random_init_knn_top1=scores["random_init"]["knn"]["top1"] if champion is None else None,
        raw_pixels_knn_top1=_raw_pixels_knn(challenger, dataset_index, evaluate) if raw_pixels else None,
        teacher=teacher[0] if teacher is not None else None,
    )


def _record(name: str, challenger, champion, decision: Decision, scores: dict, origin: dict) -> dict[str, Any]:
    return {
        "model": name,
        "challenger": challenger.version,
        "champion_before": champion.version if champion else None,
        "champion": challenger.version if decision.promote else (champion.version if champion else None),
        "decision": "promoted" if decision.promote else "rejected",
        "reasons": list(decision.reasons),
        "scores": {role: _headline(s) for role, s in scores.items()},
        "scored": origin,
    }


def _headline(scores: dict) -> dict[str, float]:
    return {"knn_top1": scores["knn"]["top1"], **({"seg_miou": scores["seg"]} if "seg" in scores else {})}
