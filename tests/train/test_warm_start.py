"""Warm start (``pretrain.init_from``) in the pure training core: what is loaded, what is refused,
and that a resumed run takes its weights from the checkpoint alone."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from dinoflow.config import save_config
from dinoflow.train import builders
from dinoflow.train.checkpoint import load_checkpoint
from dinoflow.train.run_files import BACKBONE_NAME, INIT_DIR, RANDOM_INIT_NAME
from dinoflow.train.warm_start import RECORD_NAME, init_folder, state_digest, warm_start
from tests.train.test_loop import ListSink, run


def with_model(cfg, **model):
    return cfg.model_copy(update={"model": cfg.model.model_copy(update=model)})


def source_folder(cfg, folder: Path) -> dict[str, torch.Tensor]:
    """A run folder as training writes it, with weights unlike any random init."""
    backbone = builders.build_backbone_from_config(cfg, drop_path=False)
    with torch.no_grad():
        for i, p in enumerate(backbone.parameters()):
            p.copy_(torch.linspace(-1, 1, p.numel()).reshape(p.shape) * (i + 1) / 10)
    folder.mkdir(parents=True)
    save_config(cfg, folder / "config.yaml")
    save_file(backbone.state_dict(), folder / BACKBONE_NAME)
    return backbone.state_dict()


def test_loads_the_backbone_into_student_and_teacher_and_leaves_the_heads_fresh(tiny_config, tmp_path):
    stored = source_folder(tiny_config, tmp_path / "run")
    cfg = tiny_config.model_copy(update={"init_from": str(tmp_path / "run")})
    student, teacher = builders.build_student_teacher(cfg)
    cold_student, _ = builders.build_student_teacher(cfg)
    record = warm_start(student, teacher, tmp_path / "run", cfg)
    for network in (student, teacher):
        for key, value in stored.items():
            torch.testing.assert_close(network.backbone.state_dict()[key], value, rtol=0, atol=0)
    for key, value in cold_student.head.state_dict().items():  # heads: as a cold run builds them
        torch.testing.assert_close(student.head.state_dict()[key], value, rtol=0, atol=0)
    assert record["source_backbone_sha256"] == state_digest(stored)
    assert record["student_backbone_sha256"] == record["teacher_backbone_sha256"] == state_digest(stored)


def test_another_architecture_is_refused_naming_shapes_and_keys(tiny_config, tmp_path):
    source_folder(with_model(tiny_config, embed_dim=48), tmp_path / "wide")
    cfg = tiny_config.model_copy(update={"init_from": str(tmp_path / "wide")})
    student, teacher = builders.build_student_teacher(cfg)
    with pytest.raises(ValueError) as refused:
        warm_start(student, teacher, tmp_path / "wide", cfg)
    message = str(refused.value)
    assert "cls_token is (1, 1, 48) there and (1, 1, 32) here" in message
    assert "pretrain.model.embed_dim: 48 there, 32 here" in message
    assert "pretrain.model.* and pretrain.crops.global_size" in message and "must match the source's" in message


def test_same_shapes_with_other_attention_heads_are_refused(tiny_config, tmp_path):
    source_folder(with_model(tiny_config, num_heads=4), tmp_path / "heads")
    student, teacher = builders.build_student_teacher(tiny_config)
    with pytest.raises(ValueError, match=r"attention heads are 4 there and 2 here.*pretrain\.model\.num_heads: 4"):
        warm_start(student, teacher, tmp_path / "heads", tiny_config)


def test_which_folder_a_fresh_run_starts_from(tmp_path):
    assert init_folder(None, tmp_path) is None
    with pytest.raises(ValueError, match=r"names a registered model and the training process does not read"):
        init_folder("models:/m@champion", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"lacks config.yaml and teacher_backbone.safetensors"):
        init_folder(str(tmp_path / "nowhere"), tmp_path)
    staged = tmp_path / INIT_DIR
    staged.mkdir()
    for name in ("config.yaml", BACKBONE_NAME):
        (staged / name).write_text("x")
    assert init_folder("models:/m@champion", tmp_path) == staged  # what the pretrain pipeline staged


def test_a_resumed_warm_run_matches_an_uninterrupted_one_without_reading_the_source(tiny_config, tiny_shards, tmp_path):
    stored = source_folder(tiny_config, tmp_path / "source")
    cfg = tiny_config.model_copy(update={"init_from": str(tmp_path / "source")})
    run(cfg, tiny_shards, tmp_path / "straight", ListSink())
    record = json.loads((tmp_path / "straight" / RECORD_NAME).read_text())
    assert record["student_backbone_sha256"] == record["teacher_backbone_sha256"] == state_digest(stored)
    # The random-init baseline saved beside the teacher is the net as drawn, not the warm-start weights.
    saved = load_file(tmp_path / "straight" / RANDOM_INIT_NAME)
    drawn = builders.build_backbone_from_config(cfg, drop_path=False).state_dict()
    assert saved.keys() == drawn.keys() and all(torch.equal(saved[k], drawn[k]) for k in drawn)
    assert state_digest(saved) != state_digest(stored)
    with pytest.raises(RuntimeError, match="injected crash"):
        run(cfg, tiny_shards, tmp_path / "crashed", ListSink(fail_at_step=7))
    written = (tmp_path / "crashed" / RANDOM_INIT_NAME).stat().st_mtime_ns
    shutil.rmtree(tmp_path / "source")  # the checkpoint wins: a resume must not even look for the source
    run(cfg, tiny_shards, tmp_path / "crashed", ListSink())
    assert (tmp_path / "crashed" / RANDOM_INIT_NAME).stat().st_mtime_ns == written  # a resume does not redraw it
    straight = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")
    resumed = load_checkpoint(tmp_path / "crashed" / "checkpoint.pt")
    for part in ("student", "teacher", "dino_loss"):
        for key, value in straight[part].items():
            torch.testing.assert_close(resumed[part][key], value, rtol=0, atol=0, msg=f"{part}.{key}")
    assert straight["config"]["init_from"] == str(tmp_path / "source")  # stored with the checkpoint


def test_the_training_command_stops_with_a_config_error_on_another_architecture(tiny_config, tiny_shards, tmp_path,
                                                                                 capsys):  # fmt: skip
    from dinoflow.train.__main__ import main

    source_folder(with_model(tiny_config, depth=3), tmp_path / "deeper")
    config = save_config(tiny_config, tmp_path / "config.yaml")
    code = main(["--config", str(config), "--dataset", tiny_shards["dir"], "--output", str(tmp_path / "out"),
                 f"init_from={tmp_path / 'deeper'}"])  # fmt: skip
    assert code == 2  # a configuration error: a Kubernetes Job fails at once instead of retrying
    assert "blocks.2.norm1.weight is (32,) there and absent here" in capsys.readouterr().err
    assert not (tmp_path / "out" / "checkpoint.pt").exists()
