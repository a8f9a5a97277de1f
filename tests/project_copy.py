"""Helpers for tests that run the project's commands in a throw-away copy of it."""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
_SKIP_AT_ROOT = {".venv", ".git", ".dvc", ".viz", "mlflow.db", "mlruns", "data", "build"}


def bin_path(name: str) -> str:
    """A console script of the running virtualenv (kedro, dvc, ...)."""
    return str(Path(sys.executable).with_name(name))


def command_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    # As an activated virtualenv: DVC stages call `kedro` by name.
    env.update(
        KEDRO_LOGGING_CONFIG="conf/logging.yml",
        COLUMNS="160",
        PATH=f"{Path(sys.executable).parent}:{env['PATH']}",
    )
    return env


@functools.cache
def empty_mlflow_store() -> Path:
    """An empty sqlite MLflow store, created (schema migrations and all) once per test process.
    A copy of it is what MLflow's first use of a new file leaves, without the second or so of
    migrations each new store costs. Copy it with ``new_mlflow_store``."""
    from mlflow.tracking import MlflowClient

    folder = tempfile.mkdtemp(prefix="dinoflow-empty-store-")
    atexit.register(shutil.rmtree, folder, True)
    path = Path(folder) / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


def new_mlflow_store(path: Path) -> str:
    """An empty MLflow store at ``path`` (a copy of ``empty_mlflow_store``); its sqlite URI."""
    shutil.copyfile(empty_mlflow_store(), path)
    return f"sqlite:///{path}"


def make_project_copy(project: Path, with_store: bool = True) -> Path:
    """Copy the project without data, runs or caches, and make it a fresh git + DVC repo; with an
    empty MLflow store unless ``with_store`` is False (then the first `kedro run` creates it)."""

    def ignore(directory: str, names: list[str]) -> set[str]:
        skipped = {n for n in names if n == "__pycache__" or n.endswith((".egg-info", "_cache"))}
        return skipped | (_SKIP_AT_ROOT & set(names) if Path(directory) == PROJECT_ROOT else set())

    shutil.copytree(PROJECT_ROOT, project, ignore=ignore)
    for layer in (
        "01_raw",
        "02_intermediate",
        "03_primary",
        "05_model_input",
        "06_models",
        "08_reporting",
    ):
        (project / "data" / layer).mkdir(parents=True)
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    subprocess.run([bin_path("dvc"), "init", "-q"], cwd=project, check=True, env=command_env())
    subprocess.run(["git", "add", "-A"], cwd=project, check=True)
    identity = ["-c", "user.name=dinoflow-tests", "-c", "user.email=tests@dinoflow.invalid"]
    subprocess.run(["git", *identity, "commit", "-q", "-m", "copy"], cwd=project, check=True)
    if with_store:
        new_mlflow_store(project / "mlflow.db")
    return project


def git_changes(project: Path) -> set[str]:
    """Paths git reports as changed or new since the copy was committed."""
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
    )
    return {line[3:] for line in status.stdout.splitlines()}


def run_in(project: Path, *command: str, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [bin_path(command[0]), *command[1:]],
        cwd=project,
        env={**command_env(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def kedro_run(project: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return run_in(project, "kedro", "run", *args, env=env)
