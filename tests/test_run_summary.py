"""The run summary's lines, shared by the terminal summary and the MLflow run's description."""

from dinoflow.run_summary import evaluation_lines, pretrain_line, promotion_lines, registration_line

METRICS = {"knn_top1": 0.412, "knn_top1_random_init": 0.2, "knn_top1_raw_pixels": 0.25,
           "linear_top1": 0.5, "linear_top1_random_init": 0.3}  # fmt: skip


def test_evaluation_lines_set_the_trained_backbone_against_its_baselines():
    lines = evaluation_lines(METRICS, k=20, temperature=0.07)
    assert lines[0] == "k-NN top-1 (k=20, T=0.07) on val: trained 0.412 | random init 0.200 | raw pixels 0.250"
    assert evaluation_lines(METRICS, k=10, temperature=0.1)[0].startswith("k-NN top-1 (k=10, T=0.1) on val")
    assert lines[1] == "Linear probe top-1 (best of the grid): trained 0.500 | random init 0.300"
    seg = {"seg_miou": 0.6, "seg_miou_random_init": 0.4, "seg_miou_majority": 0.1}
    assert len(lines) == 2 and "background everywhere 0.100" in evaluation_lines(METRICS | seg, 20, 0.07)[2]


def test_pretrain_registration_and_promotion_lines():
    assert pretrain_line("ci", "synthetic", "abcdef123456", {"iterations": 12, "loss": 4.12345}) == (
        "Pretrained preset ci on synthetic (config abcdef): 12 iterations, final loss 4.123"
    )
    registration = {"name": "m", "version": "2", "alias": "challenger", "model_uri": "models:/m@challenger"}
    assert registration_line(registration) == "Registered model: m version 2 alias @challenger → models:/m@challenger"
    promotion = {"challenger": "2", "decision": "rejected", "champion": "1", "reasons": ["k-NN worse", "ok"]}
    assert promotion_lines(promotion) == ["Promotion: v2 rejected -> @champion is v1", "  - k-NN worse", "  - ok"]
    first = {"challenger": "1", "decision": "rejected", "champion": None, "reasons": []}
    assert promotion_lines(first) == ["Promotion: v1 rejected -> no @champion yet"]
