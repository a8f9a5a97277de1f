"""One run at a time per project: a second run refuses at once naming the holder; the lock goes on
every exit path; a lock left by a dead run is replaced with a warning."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading

import numpy as np
import pytest
from PIL import Image

from dinoflow import project_lock
from dinoflow.hooks import ProjectLockHook
from tests.project_copy import bin_path, command_env, make_project_copy, run_in


def test_a_second_holder_is_refused_with_the_holders_pid_host_and_start(tmp_path):
    path = tmp_path / project_lock.LOCK_FILE
    fd = project_lock.acquire(path, {"kedro_run_id": "first", "pipelines": "data_ingestion"})
    holder = json.loads(path.read_text())
    assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
    with pytest.raises(project_lock.ProjectBusyError) as refused:  # a second open file description
        project_lock.acquire(path, {"kedro_run_id": "second"})
    assert str(refused.value).startswith(
        f"another run holds this project: pid {os.getpid()} on host {socket.gethostname()}, "
        f"started {holder['started']} ("
    )
    assert f"Kedro run first, pipelines data_ingestion; lock file {path}" in str(refused.value)
    project_lock.release(path, fd)
    assert not path.exists()


def test_the_lock_of_a_killed_run_is_replaced_with_a_warning(tmp_path, caplog):
    path = tmp_path / project_lock.LOCK_FILE
    code = (
        "import os, signal, sys; from pathlib import Path; from dinoflow import project_lock; "
        "project_lock.acquire(Path(sys.argv[1]), {'kedro_run_id': 'killed'}); os.kill(os.getpid(), signal.SIGKILL)"
    )
    killed = subprocess.run([sys.executable, "-c", code, str(path)], check=False)
    assert killed.returncode == -signal.SIGKILL and json.loads(path.read_text())["kedro_run_id"] == "killed"
    with caplog.at_level(logging.WARNING, logger="dinoflow.project_lock"):
        fd = project_lock.acquire(path, {"kedro_run_id": "next"})
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("replaced a stale run lock left by a run that ended without releasing it: ")
    assert "Kedro run killed" in line and json.loads(path.read_text())["kedro_run_id"] == "next"
    project_lock.release(path, fd)


class FakeContext:
    def __init__(self, project_path) -> None:
        self.project_path = project_path


@pytest.mark.parametrize("ending", ["after_pipeline_run", "on_pipeline_error", "release"])
def test_the_hook_releases_the_lock_and_the_sigterm_handler_on_every_ending(tmp_path, ending):
    hook = ProjectLockHook()
    hook.after_context_created(FakeContext(tmp_path))
    previous = signal.getsignal(signal.SIGTERM)
    hook.before_pipeline_run({"run_id": "r1", "pipeline_names": ["data_ingestion"]})
    assert json.loads((tmp_path / project_lock.LOCK_FILE).read_text())["kedro_run_id"] == "r1"
    assert signal.getsignal(signal.SIGTERM) == hook._on_sigterm
    getattr(hook, ending)()  # `release` is also what runs at interpreter exit
    assert not (tmp_path / project_lock.LOCK_FILE).exists()
    assert signal.getsignal(signal.SIGTERM) == previous


def test_a_run_of_this_process_that_stopped_before_its_first_node_does_not_block_the_next(tmp_path):
    hook = ProjectLockHook()
    hook.after_context_created(FakeContext(tmp_path))
    hook.before_pipeline_run({"run_id": "stopped early"})  # e.g. a later hook refused bad parameters
    hook.before_pipeline_run({"run_id": "next"})
    assert json.loads((tmp_path / project_lock.LOCK_FILE).read_text())["kedro_run_id"] == "next"
    hook.release()


def _first_node_started(process: subprocess.Popen, output: list[str], timeout: float) -> bool:
    """Collect the process's output in a thread; True once Kedro logged its first 'Running node'."""
    started = threading.Event()

    def read() -> None:
        for line in process.stdout:
            output.append(line)
            if "Running node:" in line:
                started.set()

    threading.Thread(target=read, daemon=True).start()
    return started.wait(timeout)


@pytest.mark.slow
def test_a_second_kedro_run_refuses_at_once_and_sigterm_releases_the_first(tmp_path):
    project = make_project_copy(tmp_path / "project")
    folder = tmp_path / "photos" / "cats"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    args = ["run", "--pipelines", "data_ingestion", "--params", f"data.source={tmp_path / 'photos'},data.min_size=16"]
    env = {**command_env(), "PYTHONUNBUFFERED": "1"}  # its log lines as they happen
    first = subprocess.Popen([bin_path("kedro"), *args], cwd=project, env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    output: list[str] = []
    try:
        assert _first_node_started(first, output, timeout=300), "".join(output)
        os.kill(first.pid, signal.SIGSTOP)  # held inside its first node, with the lock
        holder = json.loads((project / project_lock.LOCK_FILE).read_text())
        assert holder["pid"] == first.pid and holder["pipelines"] == "data_ingestion"

        second = run_in(project, "kedro", *args, timeout=300)  # a run that waited would time out here
        refusal = " ".join((second.stdout + second.stderr).split())  # rich wraps long lines
        assert second.returncode != 0
        assert f"another run holds this project: pid {first.pid} on host {socket.gethostname()}" in refusal
        assert f"Kedro run {holder['kedro_run_id']}, pipelines data_ingestion; lock file" in refusal
        assert "Running node:" not in refusal
        assert json.loads((project / project_lock.LOCK_FILE).read_text()) == holder  # untouched

        os.kill(first.pid, signal.SIGTERM)  # delivered when it resumes
        os.kill(first.pid, signal.SIGCONT)
        assert first.wait(timeout=120) != 0
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert "RunTerminated: the run was stopped by signal SIGTERM" in " ".join("".join(output).split())
    assert not (project / project_lock.LOCK_FILE).exists()
    with sqlite3.connect(project / "mlflow.db") as db:  # the refused run opened no MLflow run
        assert len(db.execute("select status from runs").fetchall()) == 1
