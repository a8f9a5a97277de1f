import json
from pathlib import Path

import pytest
import torch

from dinoflow.train.checkpoint import load_checkpoint
from dinoflow.train.distributed import DistEnv
from dinoflow.train.loop import train
from dinoflow.train.sinks import JsonlSink


class ListSink:
    def __init__(self, fail_at_step: int | None = None):
        self.records, self.fail_at_step = [], fail_at_step

    def log_metrics(self, metrics, step):
        if step == self.fail_at_step:
            raise RuntimeError(f"injected crash at step {step}")
        self.records.append((step, metrics))

    def close(self):
        pass


def run(cfg, shards, out: Path, sink) -> dict:
    return train(cfg, Path(shards["dir"]), out, sink, DistEnv(), torch.device("cpu"))


def test_trains_logs_health_metrics_and_checkpoints(tiny_config, tiny_shards, tmp_path):
    sink = ListSink()
    summary = run(tiny_config, tiny_shards, tmp_path, sink)
    iters = summary["iterations"]
    assert iters == 2 * (48 // 8)
    assert [step for step, _ in sink.records] == list(range(1, iters + 1))
    for _, metrics in sink.records:
        for key in ("loss", "lr", "teacher_temp", "teacher_momentum", "teacher_entropy",
                    "teacher_batch_entropy", "feature_std", "grad_norm", "loss_koleo"):  # fmt: skip
            assert key in metrics and metrics[key] == metrics[key], key  # present, not NaN
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["iteration"] == iters and state["config"]["preset"] == "custom"


@pytest.mark.parametrize("drop_path_rate", [0.0, 0.2])  # drop path draws from torch's global RNG
def test_resume_after_a_crash_matches_an_uninterrupted_run(tiny_config, tiny_shards, tmp_path, drop_path_rate):
    tiny_config = tiny_config.model_copy(
        update={"model": tiny_config.model.model_copy(update={"drop_path_rate": drop_path_rate})}
    )
    run(tiny_config, tiny_shards, tmp_path / "straight", ListSink())
    with pytest.raises(RuntimeError, match="injected crash"):
        run(tiny_config, tiny_shards, tmp_path / "crashed", ListSink(fail_at_step=7))
    assert load_checkpoint(tmp_path / "crashed" / "checkpoint.pt")["iteration"] == 6
    run(tiny_config, tiny_shards, tmp_path / "crashed", ListSink())
    straight = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")
    resumed = load_checkpoint(tmp_path / "crashed" / "checkpoint.pt")
    for part in ("student", "teacher", "dino_loss"):
        for key, value in straight[part].items():
            torch.testing.assert_close(resumed[part][key], value, rtol=0, atol=0, msg=f"{part}.{key}")


def test_jsonl_sink_appends_records(tmp_path):
    sink = JsonlSink(tmp_path / "m.jsonl")
    sink.log_metrics({"loss": 1.5}, 1)
    sink.log_metrics({"loss": 1.0}, 2)
    sink.close()
    lines = [json.loads(x) for x in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert lines == [{"step": 1, "loss": 1.5}, {"step": 2, "loss": 1.0}]


def test_batch_larger_than_dataset_is_a_clear_error(tiny_config, tiny_shards, tmp_path):
    from dinoflow.config import resolve_config, to_dict

    big = resolve_config(
        {
            **to_dict(tiny_config),
            "optim": {**to_dict(tiny_config)["optim"], "batch_size_per_rank": 4096},
        },
        {},
    )
    with pytest.raises(ValueError, match="batch_size_per_rank=4096"):
        run(big, tiny_shards, tmp_path, ListSink())


@pytest.mark.parametrize("separate_head", [False, True])
def test_dinov2_recipe_trains_with_ibot_sinkhorn_and_koleo(tiny_config, tiny_shards, tmp_path, separate_head):
    from dinoflow.config import resolve_config, to_dict
    from dinoflow.config.loading import RECIPES

    section = {**to_dict(tiny_config), "recipe": "dinov2"}
    # Drop the keys the recipe sets, so the recipe's values apply (explicit keys would win).
    for part, keys in RECIPES["dinov2"].items():
        for key in keys:
            section[part].pop(key)
    section["head"]["ibot_separate"] = separate_head
    cfg = resolve_config(section, {})
    assert cfg.loss.centering == "sinkhorn_knopp" and cfg.loss.ibot_weight == 1.0 and cfg.optim.layer_decay == 0.9
    sink = ListSink()
    run(cfg, tiny_shards, tmp_path, sink)
    for _, metrics in sink.records:
        assert metrics["loss_ibot"] == metrics["loss_ibot"] and metrics["loss_ibot"] >= 0
        assert metrics["loss_koleo"] == metrics["loss_koleo"]
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert "ibot_loss" in state and ("patch_head.mlp.0.weight" in state["student"]) == separate_head
    assert "mask_token" in state["student"]


def test_teacher_backbone_export_loads_into_a_plain_timm_model(tiny_config, tiny_shards, tmp_path):
    from safetensors.torch import load_file

    from dinoflow.train.builders import build_backbone_from_config, load_backbone
    from dinoflow.train.checkpoint import teacher_backbone_state

    run(tiny_config, tiny_shards, tmp_path, ListSink())
    exported = load_file(tmp_path / "teacher_backbone.safetensors")
    fresh = build_backbone_from_config(tiny_config, drop_path=False)
    fresh.load_state_dict(exported, strict=True)
    reference = teacher_backbone_state(load_checkpoint(tmp_path / "checkpoint.pt"))
    assert exported.keys() == reference.keys()
    assert all(torch.equal(exported[k], reference[k]) for k in reference)
    (tmp_path / "random_init_backbone.safetensors").unlink()  # as a folder trained by an older dinoflow
    with pytest.raises(FileNotFoundError, match="no random_init_backbone.safetensors .*older dinoflow lack it"):
        load_backbone(tmp_path, "random_init")
    with pytest.raises(ValueError, match="which='student'"):
        load_backbone(tmp_path, "student")


def test_keep_last_k_checkpoints(tiny_config, tiny_shards, tmp_path):
    cfg = tiny_config.model_copy(update={"run": tiny_config.run.model_copy(update={"keep_checkpoints": 2})})
    run(cfg, tiny_shards, tmp_path, ListSink())
    snapshots = sorted(p.name for p in tmp_path.glob("checkpoint_*.pt"))
    assert snapshots == ["checkpoint_00000010.pt", "checkpoint_00000012.pt"]
    assert load_checkpoint(tmp_path / snapshots[0])["iteration"] == 10
    assert load_checkpoint(tmp_path / "checkpoint.pt")["iteration"] == 12


@pytest.mark.slow
def test_compiled_blocks_train_and_keep_parameter_names(tiny_config, tiny_shards, tmp_path):
    cfg = tiny_config.model_copy(update={"run": tiny_config.run.model_copy(update={"compile": True})})
    run(cfg, tiny_shards, tmp_path, ListSink())
    assert "backbone.blocks.0.attn.qkv.weight" in load_checkpoint(tmp_path / "checkpoint.pt")["teacher"]


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_checkpoint(tiny_config, tiny_shards, tmp_path, monkeypatch):
    import dinoflow.train.loop as loop
    import dinoflow.train.step as step

    calls = {"n": 0}
    real_koleo = step.koleo_loss

    def poisoned(features):
        calls["n"] += 1
        value = real_koleo(features)
        return value * float("nan") if calls["n"] > 2 * 5 else value  # two calls per step: NaN at step 6

    monkeypatch.setattr(step, "koleo_loss", poisoned)
    with pytest.raises(loop.NonFiniteLossError, match="at iteration 5"):
        run(tiny_config, tiny_shards, tmp_path, ListSink())
    assert load_checkpoint(tmp_path / "checkpoint.pt")["iteration"] == 4
