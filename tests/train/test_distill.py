"""Distillation (``pretrain.distill_from``, DINOv2 §5) in the pure training core: the loss wiring
checked against hand-written formulas, what is refused, and a short real run."""

import copy
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from dinoflow.config import ConfigError, resolve_config, save_config, to_dict
from dinoflow.train import builders, distill
from dinoflow.train.checkpoint import teacher_head_state
from dinoflow.train.optim import build_optimizer
from dinoflow.train.run_files import BACKBONE_NAME, HEAD_NAME
from dinoflow.train.step import TrainParts, train_step
from tests.train.test_loop import ListSink, run


def teacher_folder(cfg, folder: Path) -> Path:
    """A trained-looking run folder (config, backbone, heads) with weights unlike a random init."""
    _, teacher = builders.build_student_teacher(cfg)
    with torch.no_grad():
        for i, p in enumerate(teacher.parameters()):
            p.add_(torch.linspace(-0.5, 0.5, p.numel()).reshape(p.shape) * (i % 3 + 1) / 10)
    folder.mkdir(parents=True)
    save_config(cfg, folder / "config.yaml")
    save_file({k: v.contiguous() for k, v in teacher.backbone.state_dict().items()}, folder / BACKBONE_NAME)
    save_file({k: v.contiguous() for k, v in teacher_head_state(teacher.state_dict()).items()}, folder / HEAD_NAME)
    return folder


def student_config(teacher_cfg, folder: Path, **loss):
    """A smaller student (16-dim, 1 block) of the teacher's prototypes, on the distill recipe."""
    section = to_dict(teacher_cfg) | {"recipe": "distill", "distill_from": str(folder)}
    section["model"] = section["model"] | {"embed_dim": 16, "depth": 1}
    section["loss"] = {
        k: v for k, v in section["loss"].items() if k not in ("centering", "ibot_weight", "koleo_weight")
    }
    section["loss"] |= loss
    return resolve_config(section, {})


def test_a_step_takes_its_targets_from_the_frozen_teacher_on_every_patch(tiny_config, tmp_path):
    folder = teacher_folder(tiny_config, tmp_path / "teacher")
    cfg = student_config(tiny_config, folder, centering="none", koleo_weight=0.0)
    assert (cfg.loss.ibot_weight, cfg.model.drop_path_rate) == (1.0, 0.0)
    student, ema = builders.build_student_teacher(cfg)
    distill.prepare_student(student)
    frozen = distill.load_teacher(folder, cfg)
    frozen_before, ema_before = copy.deepcopy(frozen.state_dict()), copy.deepcopy(ema.state_dict())
    dino_loss, ibot_loss = builders.build_losses(cfg)
    optimizer = build_optimizer(student, 1, 1.0, 1.0)
    parts = TrainParts(cfg, torch.device("cpu"), student, ema, student, optimizer, dino_loss, ibot_loss, frozen)
    seen = {}
    for name, network in (("teacher", frozen), ("student", student)):
        network.register_forward_hook(lambda m, args, kwargs, out, n=name: seen.update({n: (args, kwargs, out)}),
                                      with_kwargs=True)  # fmt: skip
    ema.register_forward_hook(lambda *a: pytest.fail("the EMA copy must not give the targets"))
    g = torch.Generator().manual_seed(0)
    crops = [torch.randn(4, 3, 16, 16, generator=g) for _ in range(2)] + [torch.randn(4, 3, 8, 8, generator=g)] * 2
    schedules = builders.build_run_schedules(cfg, 1, 1e-3)
    step = train_step(parts, 0, crops, None, schedules)

    (t_args, t_kwargs, t_out), (s_args, s_kwargs, s_out) = seen["teacher"], seen["student"]
    assert t_args[1].shape == (8, 4) and t_args[1].all() and s_args[1] is t_args[1]  # 2 views x 4 images, 2x2 patches
    assert t_kwargs["apply_masks"] is False and s_kwargs["apply_masks"] is False  # nothing masked
    # By hand: q = softmax(t / tau_t); DINO averages CE over the 2 x 4 - 2 (teacher view, other student view)
    # pairs; iBOT weights each patch 1/N_patches and divides by the 8 global crops, i.e. a plain mean here.
    tau_t, tau_s = step.teacher_temp, cfg.loss.student_temp
    q = F.softmax(t_out.cls_logits / tau_t, dim=-1).chunk(2)
    log_p = F.log_softmax(s_out.cls_logits / tau_s, dim=-1).chunk(4)
    pairs = [-(q[i] * log_p[v]).sum(-1).mean() for i in range(2) for v in range(4) if v != i]
    torch.testing.assert_close(step.losses["loss_dino"], torch.stack(pairs).mean())
    patch_ce = -(F.softmax(t_out.patch_logits / tau_t, -1) * F.log_softmax(s_out.patch_logits / tau_s, -1)).sum(-1)
    assert patch_ce.shape == (32,)
    torch.testing.assert_close(step.losses["loss_ibot"], patch_ce.mean())
    # The frozen teacher did not move (nor can it); the student's EMA copy did.
    assert not any(p.requires_grad for p in frozen.parameters()) and student.mask_token.grad is None
    for key, value in frozen.state_dict().items():
        torch.testing.assert_close(value, frozen_before[key], rtol=0, atol=0, msg=key)
    assert any(not torch.equal(v, ema_before[k]) for k, v in ema.state_dict().items())


def test_a_teacher_of_other_prototypes_or_without_heads_is_refused(tiny_config, tmp_path):
    folder = teacher_folder(tiny_config, tmp_path / "teacher")
    cfg = student_config(tiny_config, folder)
    other = cfg.model_copy(update={"head": cfg.head.model_copy(update={"out_dim": 32})})
    with pytest.raises(ConfigError, match=r"pretrain.head.out_dim is 32 here and 64 in the teacher .* set pretrain"):
        distill.load_teacher(folder, other)
    (folder / HEAD_NAME).unlink()
    with pytest.raises(FileNotFoundError, match=r"pretrain.distill_from=.* lacks teacher_head.safetensors"):
        distill.teacher_folder(cfg, tmp_path / "run")
    with pytest.raises(ConfigError, match=r"recipe 'distill' needs a teacher and distill_from is null"):
        resolve_config({"recipe": "distill"}, {})


def test_a_distillation_run_keeps_the_teacher_frozen_and_exports_a_smaller_student(tiny_config, tiny_shards, tmp_path):
    folder = teacher_folder(tiny_config, tmp_path / "teacher")
    cfg = student_config(tiny_config, folder)
    save_config(cfg, tmp_path / "out" / "config.yaml")  # as the pretrain node does
    summary = run(cfg, tiny_shards, tmp_path / "out", ListSink())
    assert summary["loss_ibot"] > 0 and "loss_dino" in summary
    record = json.loads((tmp_path / "out" / distill.RECORD_NAME).read_text())
    assert record["teacher_sha256_start"] == record["teacher_sha256_end"]
    assert record["student_backbone_params"] < record["teacher_backbone_params"] / 3
    student, _ = builders.load_backbone(tmp_path / "out")  # the EMA copy, as the final model
    assert student.embed_dim == 16 and (tmp_path / "out" / HEAD_NAME).is_file()
