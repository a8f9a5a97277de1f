"""Time-budgeted training: the calibrated count ends every schedule, calibration leaves no trace,
and a resumed run keeps its count."""

from pathlib import Path

import numpy as np
import pytest
import torch

import dinoflow.train.loop as loop
from dinoflow.train.budget import iterations_for_budget, step_seconds
from dinoflow.train.checkpoint import load_checkpoint
from dinoflow.train.distributed import DistEnv
from dinoflow.train.schedules import build_schedules
from tests.train.test_loop import ListSink, run


def budgeted(cfg, minutes=0.05):
    return cfg.model_copy(update={"optim": cfg.optim.model_copy(update={"time_budget_minutes": minutes})})


def test_iterations_for_budget_by_hand():
    assert iterations_for_budget(60.0, 6.0, 0.5) == 108  # (60 - 6) / 0.5
    assert iterations_for_budget(10.0, 9.9, 1.0) == 1  # never zero
    assert step_seconds([5.0, 5.0, 5.0, 5.0, 1.0, 2.0]) == 1.5  # start-up steps left out
    assert step_seconds([9.0] * 4 + [1.0, 2.0, 3.0]) == 2.0  # slow steps count: they are part of the cost
    with pytest.raises(ValueError, match="positive"):
        iterations_for_budget(10.0, 0.0, 0.0)


def test_stretched_schedules_keep_phase_shares_and_end_at_the_last_step():
    common = dict(peak_lr=1.0, min_lr=0.0, weight_decay=0.04, weight_decay_end=0.4, momentum_teacher=0.9,
                  momentum_teacher_end=1.0, warmup_teacher_temp=0.04, teacher_temp=0.07, epochs=4,
                  iters_per_epoch=10, warmup_epochs=1, warmup_teacher_temp_epochs=2, freeze_last_layer_epochs=1)  # fmt: skip
    nominal = build_schedules(**common)
    same = build_schedules(**common, total_iters=40)
    for name in ("lr", "weight_decay", "momentum", "teacher_temp", "last_layer_lr_scale"):
        np.testing.assert_array_equal(getattr(same, name), getattr(nominal, name))
    s = build_schedules(**common, total_iters=100)
    assert s.total_iters == 100
    assert int(np.argmax(s.lr)) == 25  # 25 warm-up steps (1/4 of the run, as 1 of 4 epochs), then the peak
    assert (s.last_layer_lr_scale == 0).sum() == 25
    assert s.teacher_temp[49] == pytest.approx(0.07) and s.teacher_temp[48] < 0.07  # 2 of 4 epochs
    # every cosine ends at its final value on the last step (DINO's half-cosine over the run)
    assert s.momentum[-1] == pytest.approx(1.0, abs=1e-3) and s.weight_decay[-1] == pytest.approx(0.4, abs=1e-3)


def test_budgeted_run_records_its_count_and_ends_its_schedules_there(tiny_config, tiny_shards, tmp_path):
    sink = ListSink()
    summary = run(budgeted(tiny_config), tiny_shards, tmp_path, sink)
    total = summary["iterations"]
    assert summary["budget_total_iters"] == total
    expected = iterations_for_budget(
        3.0, summary["budget_calibration_seconds"], summary["budget_seconds_per_iteration"]
    )
    assert total == expected
    assert [step for step, _ in sink.records] == list(range(1, total + 1))
    assert sink.records[-1][1]["teacher_momentum"] == pytest.approx(1.0, abs=1e-2)  # cosine 0.996 → 1 ended
    assert load_checkpoint(tmp_path / "checkpoint.pt")["calibration"]["total_iters"] == total


def test_calibration_steps_leave_no_trace(tiny_config, tiny_shards, tmp_path, monkeypatch):
    """A budget that calibrates to the epoch run's own count trains bitwise the same weights."""
    nominal = run(tiny_config, tiny_shards, tmp_path / "epochs", ListSink())["iterations"]
    monkeypatch.setattr(loop, "iterations_for_budget", lambda *_: nominal)
    run(budgeted(tiny_config), tiny_shards, tmp_path / "budget", ListSink())
    a, b = (load_checkpoint(tmp_path / name / "checkpoint.pt") for name in ("epochs", "budget"))
    for part in ("student", "teacher", "dino_loss"):
        for key, value in a[part].items():
            torch.testing.assert_close(b[part][key], value, rtol=0, atol=0, msg=f"{part}.{key}")


def test_resumed_budgeted_run_never_recalibrates(tiny_config, tiny_shards, tmp_path, monkeypatch):
    cfg = budgeted(tiny_config)
    monkeypatch.setattr(loop, "iterations_for_budget", lambda *_: 9)
    run(cfg, tiny_shards, tmp_path / "straight", ListSink())
    with pytest.raises(RuntimeError, match="injected crash"):
        run(cfg, tiny_shards, tmp_path / "crashed", ListSink(fail_at_step=5))
    calibrated = load_checkpoint(tmp_path / "crashed" / "checkpoint.pt")["calibration"]

    def fail(*_):
        raise AssertionError("a resumed run must not calibrate again")

    monkeypatch.setattr(loop, "_calibrate", fail)
    assert run(cfg, tiny_shards, tmp_path / "crashed", ListSink())["iterations"] == 9
    straight, resumed = (load_checkpoint(tmp_path / n / "checkpoint.pt") for n in ("straight", "crashed"))
    assert resumed["calibration"] == calibrated
    for key, value in straight["teacher"].items():
        torch.testing.assert_close(resumed["teacher"][key], value, rtol=0, atol=0, msg=key)


def test_probes_sit_at_the_same_fractions_of_a_budgeted_run(tiny_config, tiny_shards, tmp_path, monkeypatch):
    """Tuning probes once per nominal epoch; under a budget an epoch is that share of the calibrated
    count, so a 9-step run of 2 nominal epochs is probed at step 4 (4.5 rounds to even) and at 9."""
    monkeypatch.setattr(loop, "iterations_for_budget", lambda *_: 9)
    steps = []
    loop.train(budgeted(tiny_config), Path(tiny_shards["dir"]), tmp_path, ListSink(), DistEnv(), torch.device("cpu"),
               probe=lambda step, _: steps.append(step), probes=tiny_config.optim.epochs)  # fmt: skip
    assert steps == [4, 9]
