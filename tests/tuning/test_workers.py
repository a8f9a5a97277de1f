"""The study's worker processes: the others start only once the first has taken the queued
baseline trial, which two workers asking at once on SQLite could both take (real sqlite storage)."""

import threading
from concurrent.futures import Future

from optuna.trial import TrialState

from dinoflow.tuning.study import open_study
from dinoflow.tuning.workers import _wait_for_the_queue_to_empty
from tests.tuning.test_study import tune_params

BASELINE = {"loss.warmup_teacher_temp": 0.04, "loss.teacher_temp": 0.04, "optim.momentum_teacher": 0.996}


def test_the_other_workers_wait_until_the_baseline_is_taken(tmp_path):
    params = tune_params(tmp_path, f"sqlite:///{tmp_path}/o.db", 2, 2)
    study = open_study(params)
    study.enqueue_trial(BASELINE)
    released = threading.Event()
    first = Future()  # the first worker's process, still running
    waiter = threading.Thread(target=lambda: (_wait_for_the_queue_to_empty(params, first, 0.02), released.set()))
    waiter.start()
    assert not released.wait(0.3)  # the baseline is still queued: nobody else starts
    assert study.ask().number == 0 and study.trials[0].state == TrialState.RUNNING  # the first worker takes it
    assert released.wait(30)
    waiter.join()


def test_a_first_worker_that_stopped_releases_the_others(tmp_path):
    params = tune_params(tmp_path, f"sqlite:///{tmp_path}/o.db", 2, 2)
    study = open_study(params)
    study.enqueue_trial(BASELINE)
    stopped = Future()
    stopped.set_exception(RuntimeError("worker 0 failed"))  # its error is raised where its result is read
    _wait_for_the_queue_to_empty(params, stopped)
    assert [t.state for t in study.trials] == [TrialState.WAITING]
