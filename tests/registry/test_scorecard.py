"""Registered versions and the registered model carry markdown descriptions written from the
version tags: the scorecard after registration, the gate decision and its reasons after promotion."""

from mlflow.tracking import MlflowClient

from dinoflow.registry.gates import Decision
from dinoflow.registry.mlflow_registry import CHALLENGER, CHAMPION, describe, record_decision
from dinoflow.registry.scorecard import model_description, version_description

TAGS = {
    "metric.knn_top1": "0.412000", "metric.knn_top1_random_init": "0.200000", "metric.knn_top1_raw_pixels": "0.250000",
    "metric.linear_top1": "0.500000", "metric.linear_top1_random_init": "0.300000",
    "data_root": "data/01_raw/synthetic", "data_dvc_md5": "0123abcd.dir", "data_fingerprint": "f" * 64,
    "validation_status": "passed", "run_id": "r" * 32, "git_sha": "a" * 40, "config_hash": "c" * 12,
    "evaluation_protocol": "e" * 12, "collapsed": "false", "onnx_max_abs_diff": "1.00e-06", "preset": "ci",
}  # fmt: skip


def test_the_scorecard_sets_scores_against_baselines_with_data_gate_and_lineage():
    text = version_description("m", "3", TAGS)
    assert text.startswith("### m v3 (preset ci)")
    assert "| k-NN top-1 | **0.412** | 0.200 | raw pixels 0.250 |" in text
    assert "| linear probe top-1 | **0.500** | 0.300 | – |" in text
    assert "segmentation" not in text  # not measured: no row
    assert "**Data**: synthetic (`data/01_raw/synthetic`), DVC md5 `0123abcd.dir`, fingerprint `ffffffffffff`" in text
    assert "data validation passed" in text and "**Gate**: not decided yet" in text
    assert f"run `{'r' * 32}`, git `{'a' * 10}`, config `{'c' * 12}`" in text and "collapse flag not raised" in text
    decided = {**TAGS, "promotion.decision": "rejected", "promotion.compared_with": "2",
               "promotion.reasons": "data validation passed; k-NN top-1 0.41 vs champion v2 0.50 (-0.09, beyond -0.0)"}  # fmt: skip
    lines = version_description("m", "3", decided).splitlines()
    assert "**Gate**: rejected (compared with v2):" in lines
    assert "- k-NN top-1 0.41 vs champion v2 0.50 (-0.09, beyond -0.0)" in lines


def test_the_model_overview_names_each_alias_with_its_figures():
    text = model_description("m", {"champion": "1", "challenger": "3"}, {"1": TAGS, "3": {}})
    assert 'mlflow.pytorch.load_model("models:/m@champion")' in text
    assert "- **@champion** → v1: k-NN top-1 0.412 (random init 0.200, raw pixels 0.250), gate not decided" in text
    assert "- **@challenger** → v3: k-NN top-1 – (random init –, raw pixels –), gate not decided" in text


def test_descriptions_follow_registration_and_promotion_on_a_real_store(mlflow_tmp):
    client = MlflowClient()
    client.create_registered_model("m")
    version = client.create_model_version("m", f"runs:/{mlflow_tmp}/backbone", run_id=mlflow_tmp, tags=TAGS).version
    client.set_registered_model_alias("m", CHALLENGER, version)
    describe("m", version)
    assert "**Gate**: not decided yet" in client.get_model_version("m", version).description
    assert "**@challenger** → v1: k-NN top-1 0.412" in client.get_registered_model("m").description

    record_decision("m", version, None, Decision(True, ("data validation passed", "first promotion: ok")), {})
    description = client.get_model_version("m", version).description
    assert "**Gate**: promoted (first promotion, no champion before):" in description
    assert "- first promotion: ok" in description
    overview = client.get_registered_model("m").description
    assert f"**@{CHAMPION}** → v1" in overview and "gate promoted" in overview
