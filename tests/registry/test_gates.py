"""Promotion gates decide from the evidence and say why, every gate reported."""

import pytest

from dinoflow.config.pipeline_params import Gates
from dinoflow.registry.gates import Evidence, decide

GATES = Gates(max_knn_drop=0.01, max_seg_drop=0.02, require_validation_passed=True, forbid_collapse=True,
              first_min_gain_over_random_init=0.01)  # fmt: skip


def evidence(version="2", knn=0.50, seg=0.40, valid=True, collapsed=False, labels=("cat", "dog")) -> Evidence:
    return Evidence(version, knn, seg, valid, collapsed, labels)


def test_no_worse_within_the_margin_is_promoted():
    decision = decide(evidence(knn=0.495, seg=0.39), evidence("1", knn=0.50, seg=0.40), GATES)
    assert decision.promote
    assert decision.reasons == (
        "data validation passed",
        "no collapse flag",
        "same label set as champion v1 (2 classes)",
        "k-NN top-1 0.4950 vs champion v1 0.5000 (-0.0050, within -0.01)",
        "seg mIoU 0.3900 vs champion v1 0.4000 (-0.0100, within -0.02)",
    )


@pytest.mark.parametrize(
    ("challenger", "failed"),
    [
        (evidence(knn=0.48), "k-NN top-1 0.4800 vs champion v1 0.5000 (-0.0200, beyond -0.01)"),
        (evidence(seg=0.37), "seg mIoU 0.3700 vs champion v1 0.4000 (-0.0300, beyond -0.02)"),
        (evidence(valid=False, knn=0.9), "data validation failed"),
        (evidence(collapsed=True, knn=0.9), "collapse flag raised"),
    ],
)
def test_each_gate_alone_rejects_and_names_itself(challenger, failed):
    decision = decide(challenger, evidence("1"), GATES)
    assert not decision.promote and failed in decision.reasons
    assert decision.summary.startswith("rejected: ")


def test_another_label_set_is_refused_unless_allowed():
    clipart = evidence(knn=0.9, labels=("animals", "cat", "icons", "people", "plants"))
    refused = decide(clipart, evidence("1"), GATES)
    assert not refused.promote
    reason = next(r for r in refused.reasons if "label set" in r)
    assert reason.startswith(
        "label set differs from champion v1's: 5 classes vs 2, added animals, icons, people (+1 more), removed dog: "
    )
    assert "one registered model name per data domain" in reason and "allow_label_set_change: true" in reason
    assert "; " not in reason  # the promotion.reasons tag joins reasons with "; "
    allowed = decide(clipart, evidence("1"), GATES.model_copy(update={"allow_label_set_change": True}))
    assert allowed.promote and any(
        r.endswith("allowed by promote.gates.allow_label_set_change") for r in allowed.reasons
    )
    assert decide(evidence(labels=("dog", "cat")), evidence("1"), GATES).promote  # order does not matter
    assert decide(clipart, None, GATES, random_init_knn_top1=0.1).promote  # first promotion: nothing to differ from


def test_an_unknown_label_set_is_refused_unless_allowed():
    legacy = evidence("1", labels=None)  # registered before label sets were recorded
    refused = decide(evidence(), legacy, GATES)
    assert not refused.promote
    assert "label set of v1 unknown (registered before label sets were recorded): use one" in refused.summary
    assert decide(evidence(), legacy, GATES.model_copy(update={"allow_label_set_change": True})).promote


def test_first_promotion_needs_a_gain_over_random_init():
    assert decide(evidence(knn=0.30), None, GATES, random_init_knn_top1=0.25).promote
    rejected = decide(evidence(knn=0.255), None, GATES, random_init_knn_top1=0.25)
    assert not rejected.promote
    assert rejected.reasons[-1] == "first promotion: k-NN gain over random init +0.0050 (min +0.0100)"


def test_segmentation_is_skipped_when_either_side_has_no_masks():
    decision = decide(evidence(seg=None), evidence("1", seg=0.9), GATES)
    assert decision.promote and not any("seg" in r for r in decision.reasons)


def test_raw_pixel_gate_checks_every_promotion_and_names_the_figures():
    gates = GATES.model_copy(update={"min_gain_over_raw_pixels": 0.10})
    passed = decide(evidence(knn=0.60), None, gates, random_init_knn_top1=0.30, raw_pixels_knn_top1=0.45)
    assert passed.promote
    assert "k-NN gain over raw pixels +0.1500 (0.6000 vs 0.4500, min +0.1000)" in passed.reasons
    failed = decide(evidence(knn=0.60), evidence("1", knn=0.55), gates, raw_pixels_knn_top1=0.55)
    assert not failed.promote
    assert "k-NN gain over raw pixels +0.0500 (0.6000 vs 0.5500, min +0.1000)" in failed.reasons
    unknown = decide(evidence(knn=0.90), None, gates, random_init_knn_top1=0.30)
    assert not unknown.promote and any("unknown" in r for r in unknown.reasons)


def test_raw_pixel_gate_is_off_by_default():
    decision = decide(evidence(knn=0.20), None, GATES, random_init_knn_top1=0.10, raw_pixels_knn_top1=0.90)
    assert decision.promote and not any("raw pixels" in r for r in decision.reasons)


def test_teacher_share_gate_divides_the_students_knn_by_its_teachers():
    gates = GATES.model_copy(update={"min_share_of_teacher_knn": 0.8})
    teacher = evidence("dinoflow-backbone/3", knn=0.50)
    passed = decide(evidence(knn=0.42), None, gates, random_init_knn_top1=0.10, teacher=teacher)
    assert passed.promote  # 0.42 / 0.50 = 0.84
    assert "k-NN share of teacher dinoflow-backbone/3 0.8400 (0.4200 vs 0.5000, min 0.8000)" in passed.reasons
    failed = decide(evidence(knn=0.35), None, gates, random_init_knn_top1=0.10, teacher=teacher)
    assert not failed.promote  # 0.35 / 0.50 = 0.70
    assert "k-NN share of teacher dinoflow-backbone/3 0.7000 (0.3500 vs 0.5000, min 0.8000)" in failed.reasons
    undistilled = decide(evidence(knn=0.42), None, gates, random_init_knn_top1=0.10)
    assert undistilled.promote and any(r.startswith("not distilled") for r in undistilled.reasons)
    off = decide(evidence(knn=0.10), None, GATES, random_init_knn_top1=0.0, teacher=teacher)
    assert not any("share of teacher" in r for r in off.reasons)
