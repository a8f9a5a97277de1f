"""Promotion gates: whether a challenger backbone may replace the champion, and why.

Pure decision logic (no MLflow): the promote pipeline gathers the evidence, scoring both
backbones on the same evaluation set, and records the decision and its reasons in the registry.
"""

from __future__ import annotations

from dataclasses import dataclass

from dinoflow.config.pipeline_params import Gates


@dataclass(frozen=True)
class Evidence:
    """What is known about one backbone, scored on the evaluation set of this decision."""

    version: str
    knn_top1: float
    seg_miou: float | None
    validation_passed: bool
    collapsed: bool
    labels: tuple[str, ...] | None = None  # class names of its data; None: unknown (registered before recorded)


@dataclass(frozen=True)
class Decision:
    promote: bool
    reasons: tuple[str, ...]

    @property
    def summary(self) -> str:
        return ("promoted: " if self.promote else "rejected: ") + "; ".join(self.reasons)


def decide(
    challenger: Evidence,
    champion: Evidence | None,
    gates: Gates,
    random_init_knn_top1: float | None = None,
    raw_pixels_knn_top1: float | None = None,
    teacher: Evidence | None = None,
) -> Decision:
    """Every gate is checked and reported, passed or not, so the record explains the decision.

    Args:
        random_init_knn_top1: k-NN top-1 of the challenger's architecture at random init; used
            only for the first promotion (no champion).
        raw_pixels_knn_top1: k-NN top-1 of standardised raw pixels on the same evaluation set;
            used by ``gates.min_gain_over_raw_pixels``.
        teacher: the distillation teacher of a distilled challenger, scored on the same evaluation
            set (``version`` is its ``<name>/<version>``); used by ``gates.min_share_of_teacher_knn``.
    """
    checks: list[tuple[bool, str]] = []
    if gates.require_validation_passed:
        checks.append(
            (
                challenger.validation_passed,
                "data validation " + ("passed" if challenger.validation_passed else "failed"),
            )
        )
    if gates.forbid_collapse:
        checks.append(
            (not challenger.collapsed, "collapse flag raised" if challenger.collapsed else "no collapse flag")
        )
    if gates.min_gain_over_raw_pixels is not None:
        checks.append(_beats_raw_pixels(challenger.knn_top1, raw_pixels_knn_top1, gates.min_gain_over_raw_pixels))
    if gates.min_share_of_teacher_knn is not None:
        checks.append(_share_of_teacher(challenger.knn_top1, teacher, gates.min_share_of_teacher_knn))
    if champion is None:
        gain = challenger.knn_top1 - (random_init_knn_top1 if random_init_knn_top1 is not None else 0.0)
        checks.append((
            gain >= gates.first_min_gain_over_random_init,
            f"first promotion: k-NN gain over random init {gain:+.4f} (min {gates.first_min_gain_over_random_init:+.4f})",
        ))  # fmt: skip
    else:
        checks.append(_same_label_set(challenger, champion, gates.allow_label_set_change))
        checks.append(_no_worse("k-NN top-1", challenger.knn_top1, champion, champion.knn_top1, gates.max_knn_drop))
        if challenger.seg_miou is not None and champion.seg_miou is not None:
            checks.append(_no_worse("seg mIoU", challenger.seg_miou, champion, champion.seg_miou, gates.max_seg_drop))
    return Decision(all(ok for ok, _ in checks), tuple(reason for _, reason in checks))


def _no_worse(name: str, ours: float, champion: Evidence, theirs: float, margin: float) -> tuple[bool, str]:
    delta = ours - theirs
    verdict = "within" if delta >= -margin else "beyond"
    return (
        delta >= -margin,
        f"{name} {ours:.4f} vs champion v{champion.version} {theirs:.4f} ({delta:+.4f}, {verdict} -{margin})",
    )


def _same_label_set(challenger: Evidence, champion: Evidence, allowed: bool) -> tuple[bool, str]:
    """Scores of backbones trained for different label sets (data domains) are not comparable,
    even on one evaluation set: the user must ask for such a promotion (``allow_label_set_change``)."""
    ours, theirs = challenger.labels, champion.labels
    if ours is not None and theirs is not None and set(ours) == set(theirs):
        return True, f"same label set as champion v{champion.version} ({len(ours)} classes)"
    if ours is None or theirs is None:
        unknown = " and ".join(f"v{e.version}" for e in (challenger, champion) if e.labels is None)
        what = f"label set of {unknown} unknown (registered before label sets were recorded)"
    else:
        added, removed = sorted(set(ours) - set(theirs)), sorted(set(theirs) - set(ours))
        what = (
            f"label set differs from champion v{champion.version}'s: {len(ours)} classes vs {len(theirs)}"
            + (f", added {_some(added)}" if added else "")
            + (f", removed {_some(removed)}" if removed else "")
        )
    if allowed:
        return True, f"{what}, allowed by promote.gates.allow_label_set_change"
    return False, (
        f"{what}: use one registered model name per data domain, "
        "or set promote.gates.allow_label_set_change: true to promote across label sets"
    )


def _some(names: list[str], shown: int = 3) -> str:
    return ", ".join(names[:shown]) + (f" (+{len(names) - shown} more)" if len(names) > shown else "")


def _beats_raw_pixels(ours: float, raw: float | None, min_gain: float) -> tuple[bool, str]:
    if raw is None:
        return False, "k-NN gain over raw pixels unknown (no raw-pixel score on this evaluation set)"
    gain = ours - raw
    return gain >= min_gain, f"k-NN gain over raw pixels {gain:+.4f} ({ours:.4f} vs {raw:.4f}, min {min_gain:+.4f})"


def _share_of_teacher(ours: float, teacher: Evidence | None, min_share: float) -> tuple[bool, str]:
    """A distilled student keeps at least ``min_share`` of its teacher's k-NN top-1 (DINOv2 §5);
    a challenger that was not distilled has no teacher and passes."""
    if teacher is None:
        return True, "not distilled: no teacher to compare with (min_share_of_teacher_knn not applied)"
    if teacher.knn_top1 <= 0:
        return False, f"k-NN share of teacher {teacher.version} unknown: the teacher scores {teacher.knn_top1:.4f}"
    share = ours / teacher.knn_top1
    return share >= min_share, (
        f"k-NN share of teacher {teacher.version} {share:.4f} ({ours:.4f} vs {teacher.knn_top1:.4f}, min {min_share:.4f})"
    )
