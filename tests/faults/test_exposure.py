"""Servers the project starts listen on loopback only, unless the user says otherwise."""

import re

from tests.project_copy import PROJECT_ROOT

SERVERS = ("mlflow ui", "mlflow server", "kedro viz run", "optuna-dashboard")


def test_every_server_target_binds_to_loopback():
    lines = [line for line in (PROJECT_ROOT / "Makefile").read_text().splitlines() if any(s in line for s in SERVERS)]
    assert len(lines) >= 3
    for line in lines:
        assert re.search(r"--host 127\.0\.0\.1\b", line), line


def test_the_test_servers_bind_to_loopback():
    source = (PROJECT_ROOT / "tests" / "servers.py").read_text()
    assert '"--host", "127.0.0.1"' in source and "listen_addresses=127.0.0.1" in source
