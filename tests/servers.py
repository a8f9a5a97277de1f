"""Real servers for the tests: a throw-away PostgreSQL cluster, an ``mlflow server`` and an
``mlflow models serve`` scoring server, all on loopback, started for the test and stopped afterwards."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from tests.project_copy import new_mlflow_store


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_bin() -> Path:
    """Where ``initdb`` lives: ``$PG_BIN``, the PATH, or Debian's versioned layout."""
    candidates = [os.environ.get("PG_BIN", ""), str(Path(shutil.which("initdb") or "").parent)]
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for folder in candidates:
        if folder and (Path(folder) / "initdb").exists():
            return Path(folder)
    raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) not found: install PostgreSQL or set PG_BIN")


@contextlib.contextmanager
def postgres_cluster() -> Iterator[str]:
    """A fresh cluster in a temp dir; yields ``postgresql+psycopg2://postgres@127.0.0.1:<port>/mlflow``.

    PostgreSQL refuses to run as root, so under root the cluster runs as the ``postgres`` user.
    """
    bin_dir, port = postgres_bin(), free_port()
    as_user: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="dinoflow-pg-"))
    if os.geteuid() == 0:
        account = pwd.getpwnam("postgres")
        os.chown(root, account.pw_uid, account.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data = root / "data"

    def run(*args: str) -> None:
        subprocess.run([*as_user, *args], check=True, capture_output=True, text=True, timeout=120)

    run(str(bin_dir / "initdb"), "-D", str(data), "--auth=trust", "--username=postgres", "--no-sync", "-E", "UTF8")
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    run(str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start")
    try:
        import psycopg2

        connection = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
        connection.autocommit = True
        connection.cursor().execute("CREATE DATABASE mlflow")
        connection.close()
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/mlflow"  # SQLAlchemy 2.1 defaults to psycopg 3
    finally:
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def mlflow_server(backend_uri: str, artifacts: Path, timeout_s: float = 90, port: int | None = None) -> Iterator[str]:
    """``mlflow server`` on 127.0.0.1 serving artifacts from ``artifacts``; yields its URL. A sqlite
    store that does not exist yet starts as a copy of the empty store (``new_mlflow_store``)."""
    sqlite_file = Path(backend_uri.removeprefix("sqlite:///"))
    if backend_uri.startswith("sqlite:///") and not sqlite_file.exists():
        new_mlflow_store(sqlite_file)
    port = port or free_port()
    command = [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri", backend_uri,
               "--artifacts-destination", str(artifacts), "--host", "127.0.0.1", "--port", str(port),
               "--workers", "1"]  # fmt: skip
    # As README "team server" advises: no GenAI job runners (8 processes and 1.8 GB we never use).
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with _serving(
        "mlflow server", command, port, artifacts.parent / f"mlflow-server-{port}.log", timeout_s, env
    ) as url:
        yield url


@contextlib.contextmanager
def model_server(model_uri: str, tracking_uri: str, log_dir: Path, timeout_s: float = 120) -> Iterator[str]:
    """``mlflow models serve --env-manager local`` of ``model_uri`` (read from ``tracking_uri``) on
    127.0.0.1; yields its URL once ``/health`` answers (the model is loaded)."""
    port = free_port()
    bin_dir = Path(sys.executable).parent
    command = [str(bin_dir / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager", "local",
               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]  # fmt: skip
    # The scoring server execs `uvicorn` by name: the virtualenv's scripts must be on PATH.
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    with _serving("mlflow models serve", command, port, log_dir / f"model-server-{port}.log", timeout_s, env) as url:
        yield url


@contextlib.contextmanager
def _serving(
    name: str, command: list[str], port: int, log_path: Path, timeout_s: float, env: dict[str, str] | None = None
) -> Iterator[str]:
    """Start ``command`` in its own session, wait for ``/health`` on ``port``, stop it afterwards."""
    log = open(log_path, "w")  # noqa: SIM115
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start: {log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            # uvicorn can sit in a graceful shutdown behind a kept-alive client; the test is over
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        log.close()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def rendered_page(url: str, budget_s: float = 25, screenshot: Path | None = None) -> str:
    """The DOM of ``url`` after headless Chromium ran its scripts for ``budget_s`` of virtual time
    (it waits for pending fetches, so a single-page app has rendered its data); optionally also a
    1400x900 screenshot."""
    if CHROMIUM is None:
        raise RuntimeError("chromium is not installed (apt-get install chromium)")
    # --no-sandbox: the sandbox refuses to run as root (CI containers).
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--hide-scrollbars", f"--virtual-time-budget={int(budget_s * 1000)}"]  # fmt: skip
    if screenshot is not None:
        shot = [*flags, f"--screenshot={screenshot}", "--window-size=1400,900", url]
        subprocess.run(shot, capture_output=True, timeout=budget_s + 90, check=True)
    result = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True, timeout=budget_s + 90)
    if result.returncode != 0:
        raise RuntimeError(f"chromium failed on {url}: {result.stderr[-2000:]}")
    return result.stdout
