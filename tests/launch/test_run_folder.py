"""The run folder's key: what makes two runs the same run (resume, reuse) and what does not."""

import json

from dinoflow.launch.run_folder import run_key, training_code_fingerprint


def test_run_key_changes_with_config_or_data():
    config = {"optim": {"epochs": 1}}
    assert run_key(config, "a") == run_key(json.loads(json.dumps(config)), "a")
    assert run_key(config, "a") != run_key(config, "b")
    assert run_key(config, "a") != run_key({"optim": {"epochs": 2}}, "a")
    assert run_key(config, "a", "code-v1") != run_key(config, "a", "code-v2")


def test_training_code_fingerprint_follows_training_sources_only(tmp_path):
    for name in ("train/loop.py", "data/multicrop.py", "pipelines/evaluate/nodes.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x = 1\n")
    before = training_code_fingerprint(tmp_path)
    (tmp_path / "pipelines/evaluate/nodes.py").write_text("x = 2\n")  # not training code
    assert training_code_fingerprint(tmp_path) == before
    (tmp_path / "train/loop.py").write_text("x = 2\n")
    assert training_code_fingerprint(tmp_path) != before
    assert len(training_code_fingerprint()) == 64  # the installed package
