from pathlib import Path

import pytest
import yaml

from dinoflow.config import ConfigError, load_config_file, resolve_config, save_config, scaled_lr
from dinoflow.config.loading import deep_merge, parse_overrides
from tests.conftest import PROJECT_ROOT

PARAMS = PROJECT_ROOT / "conf" / "base" / "parameters_pretrain.yml"


def project_presets():
    return yaml.safe_load(PARAMS.read_text())["pretrain_presets"]


@pytest.mark.parametrize("preset", ["demo", "ci", "vit_s16", "vit_b16"])
def test_every_shipped_preset_validates(preset):
    cfg = resolve_config({"preset": preset}, project_presets())
    assert cfg.preset == preset


def test_explicit_keys_and_overrides_win_over_the_preset():
    cfg = resolve_config({"preset": "demo", "optim": {"epochs": 3}}, project_presets(), ["loss.koleo_weight=0.5"])
    assert cfg.optim.epochs == 3 and cfg.loss.koleo_weight == 0.5
    assert cfg.model.embed_dim == project_presets()["demo"]["model"]["embed_dim"]


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match=r"pretrain\.optim\.base_lrr"):
        resolve_config({"optim": {"base_lrr": 1.0}}, {})


def test_wrong_type_is_named():
    with pytest.raises(ConfigError, match=r"pretrain\.optim\.epochs"):
        resolve_config({"optim": {"epochs": "ten"}}, {})
    with pytest.raises(ConfigError, match=r"pretrain\.run\.precision"):
        resolve_config({"run": {"precision": "fp8"}}, {})


def test_unknown_preset_lists_the_choices():
    with pytest.raises(ConfigError, match="unknown preset 'tiny'.*demo"):
        resolve_config({"preset": "tiny"}, project_presets())


def test_overrides_are_typed_like_yaml_and_merge_into_nested_keys():
    assert parse_overrides(["optim.base_lr=1e-3", " run.seed = 3", "crops.local_number=4", "model.fused_attn=false"]) == {
        "optim": {"base_lr": 0.001}, "run": {"seed": 3}, "crops": {"local_number": 4}, "model": {"fused_attn": False}
    }  # fmt: skip
    base = {"optim": {"epochs": 2, "betas": [0.9, 0.999]}, "run": {"seed": 0}}
    assert deep_merge(base, {"optim": {"betas": [0.8]}}) == {"optim": {"epochs": 2, "betas": [0.8]}, "run": {"seed": 0}}
    assert base["optim"]["betas"] == [0.9, 0.999]  # inputs untouched


def test_malformed_override():
    with pytest.raises(ConfigError, match="key=value"):
        resolve_config({}, {}, ["optim.epochs"])


def test_resolved_file_round_trips(tmp_path: Path):
    cfg = resolve_config({"preset": "ci"}, project_presets())
    path = save_config(cfg, tmp_path / "config.yaml")
    assert load_config_file(path) == cfg
    assert load_config_file(PARAMS, ["preset=ci"]) == cfg


def test_linear_lr_scaling_rule():
    assert scaled_lr(5e-4, 64, 16) == pytest.approx(2e-3)  # DINO: batch 1024 → 0.002
