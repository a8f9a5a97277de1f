"""Registration retries: bounded, doubling waits, local write failures not taken for an outage."""

from __future__ import annotations

import pytest
from mlflow.exceptions import MlflowException

from dinoflow.atomic import WriteFailedError
from dinoflow.registry.mlflow_registry import RegistrationFailedError, with_retries


def failing(times: int, error: Exception):
    calls = []

    def action():
        calls.append(1)
        if len(calls) <= times:
            raise error
        return "registered"

    return action, calls


def test_a_registry_that_answers_again_within_the_tries_registers(monkeypatch):
    waits = []
    monkeypatch.setattr("dinoflow.registry.mlflow_registry.time.sleep", waits.append)
    action, calls = failing(2, MlflowException("503 from the server"))
    assert with_retries(action, attempts=3, first_wait_s=5, kept="kept") == "registered"
    assert len(calls) == 3 and waits == [5, 10]


def test_every_try_failing_names_the_limit_the_last_error_and_what_is_kept(monkeypatch):
    monkeypatch.setattr("dinoflow.registry.mlflow_registry.time.sleep", lambda s: None)
    action, calls = failing(99, ConnectionRefusedError("connection refused"))
    with pytest.raises(
        RegistrationFailedError, match=r"all 2 tries.*register\.attempts = 2.*connection refused.*run kept"
    ):
        with_retries(action, attempts=2, first_wait_s=1, kept="run kept")
    assert len(calls) == 2


def test_a_local_write_failure_is_not_retried():
    action, calls = failing(99, WriteFailedError("could not write the ONNX export: no space"))
    with pytest.raises(WriteFailedError):
        with_retries(action, attempts=3, first_wait_s=0, kept="")
    assert len(calls) == 1
