import numpy as np
import pytest

from dinoflow.train.schedules import build_schedules, cosine_schedule, warmup_then_constant


def test_cosine_with_warmup_table():
    values = cosine_schedule(1.0, 0.0, total_iters=6, warmup_iters=2)
    # warmup 0, 0.5; then cosine over 4 steps: 1, (1+cos(pi/4))/2, 0.5, (1+cos(3pi/4))/2
    expected = [0.0, 0.5, 1.0, (1 + np.cos(np.pi / 4)) / 2, 0.5, (1 + np.cos(3 * np.pi / 4)) / 2]
    np.testing.assert_allclose(values, expected)


def test_teacher_temperature_warmup():
    np.testing.assert_allclose(warmup_then_constant(0.04, 0.07, 5, 3), [0.04, 0.055, 0.07, 0.07, 0.07])


def test_run_schedules_shapes_and_freeze():
    s = build_schedules(
        peak_lr=1e-3, min_lr=1e-6, weight_decay=0.04, weight_decay_end=0.4, momentum_teacher=0.996,
        momentum_teacher_end=1.0, warmup_teacher_temp=0.04, teacher_temp=0.07, epochs=4,
        iters_per_epoch=10, warmup_epochs=1, warmup_teacher_temp_epochs=2, freeze_last_layer_epochs=1,
    )  # fmt: skip
    assert s.total_iters == 40
    assert s.lr.max() == pytest.approx(1e-3) and s.lr[0] == 0.0
    assert s.weight_decay[0] == pytest.approx(0.04) and s.weight_decay[-1] == pytest.approx(0.4, rel=1e-2)
    assert s.momentum[0] == pytest.approx(0.996) and np.all(np.diff(s.momentum) >= 0)
    assert s.teacher_temp[19] == pytest.approx(0.07) and s.teacher_temp[0] == pytest.approx(0.04)
    assert s.last_layer_lr_scale[:10].sum() == 0 and s.last_layer_lr_scale[10:].min() == 1
