"""One run at a time per project: a lock file that names the run holding the project.

Runs in one project share its data layers (manifest, shards, reports) and, with the same config,
its training output folder, so a second run **refuses at once** (it does not wait) with a message
naming the holder: pid, host, start time, Kedro run id and pipelines. Waiting would leave a
scheduled run hanging on a run of unknown length; a refusal says at once who to wait for.

The lock is an exclusive ``flock`` on ``<project>/.dinoflow-run.lock``, and the file holds the
holder's JSON. The kernel drops the ``flock`` when the holder dies however it dies (SIGKILL, power
loss of a container), so a lock file left by a dead run is detected when the next run takes the
lock: it is replaced with a warning naming the run that left it. Local file systems only (NFS
``flock`` semantics vary): runs on several machines need one project copy each.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

LOCK_FILE = ".dinoflow-run.lock"


class ProjectBusyError(RuntimeError):
    """Another run holds the project; the message names it."""


class RunTerminated(BaseException):  # noqa: N818 (the name says what happened, as KeyboardInterrupt does)
    """The run was asked to stop (SIGTERM), raised in the main thread. A ``BaseException``, as
    ``KeyboardInterrupt`` is: code that catches ``Exception`` (a logging handler, a per-file decode)
    must not swallow it; ``finally`` blocks and exit handlers still run."""


def describe(holder: dict[str, Any]) -> str:
    """The holder in words: ``pid 123 on host h, started 2026-01-01T00:00:00+00:00 (5 s ago), ...``."""
    if not holder:
        return "a run that has not written its details yet"
    age = f" ({time.time() - holder['started_unix']:.0f} s ago)" if "started_unix" in holder else ""
    text = f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}, started {holder.get('started', '?')}{age}"
    if holder.get("kedro_run_id"):
        text += f", Kedro run {holder['kedro_run_id']}"
    if holder.get("pipelines"):
        text += f", pipelines {holder['pipelines']}"
    return text


def _read(fd: int) -> dict[str, Any]:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, 1 << 16)
    try:
        return json.loads(raw) if raw.strip() else {}
    except ValueError:
        return {"pid": "?", "host": "?", "started": f"unknown (unreadable lock: {raw[:80]!r})"}


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return None


def acquire(path: Path, run: dict[str, Any]) -> int:
    """Take the project lock at ``path`` for this process, writing ``run`` (plus pid, host and start
    time) into it; replaces a lock file left by a dead run with a warning.

    Returns:
        The lock file's descriptor, for ``release``.

    Raises:
        ProjectBusyError: another live process holds the lock (the message names it).
    """
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            os.close(fd)
            raise ProjectBusyError(
                f"another run holds this project: {describe(holder)}; lock file {path}. Runs in one project share "
                "its data and outputs: wait for that run to end or stop it, or run from another copy of the project"
            ) from None
        if os.fstat(fd).st_ino == _inode(path):
            break
        os.close(fd)  # the holder removed the file between our open and flock: lock the new one
    stale = _read(fd)
    if stale:
        log.warning("replaced a stale run lock left by a run that ended without releasing it: %s", describe(stale))
    now = time.time()
    holder = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds"),
        "started_unix": now,
        **run,
    }
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, (json.dumps(holder) + "\n").encode())
    return fd


def release(path: Path, fd: int) -> None:
    """Remove the lock file and drop the lock (the file goes first, while still locked)."""
    if os.fstat(fd).st_ino == _inode(path):
        path.unlink()
    os.close(fd)
