"""Write-then-rename for the files a run produces.

A reader, or a later run, sees either the previous file or the complete new one, never half of
one: the content goes to a temporary file in the same folder, is flushed to disk, and is renamed
over the target (atomic on POSIX file systems). A write that fails (a full disk above all) removes
its temporary file and raises ``WriteFailedError`` naming what was written, where, and how much
room that volume has left.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class WriteFailedError(OSError):
    """A file could not be written; nothing half-written is left under its name."""


def free_space(folder: Path) -> str:
    """Free space on ``folder``'s volume, in words."""
    try:
        return f"{shutil.disk_usage(folder).free / 2**20:.1f} MiB free there"
    except OSError:
        return "free space unknown"


@contextmanager
def atomic_path(path: Path, what: str) -> Iterator[Path]:
    """Yields the temporary path to write ``what`` (e.g. "dataset shard") to; on leaving the block
    it is flushed to disk and renamed to ``path``. Writers that pick the format from the file name
    must be told the format: the temporary name ends in ``.tmp``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")  # fixed: the next write replaces a killed writer's debris
    try:
        yield tmp
        with open(tmp, "rb") as written:
            os.fsync(written.fileno())
    except (OSError, RuntimeError) as error:  # ENOSPC also surfaces as RuntimeError (torch's zip writer)
        tmp.unlink(missing_ok=True)
        raise WriteFailedError(
            f"could not write the {what} {path}: {error} ({free_space(path.parent)}); "
            "nothing half-written was left under that name"
        ) from error
    tmp.replace(path)
