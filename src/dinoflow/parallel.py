"""Work spread over processes, and processes that die with the one that started them.

A pipeline killed with SIGKILL (the OOM killer, a drained node) cannot stop what it started; on
Linux the kernel can, when each child asks for a signal at its parent's death (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(signal_number: int = signal.SIGKILL, parent_pid: int | None = None) -> None:
    """Ask Linux to send ``signal_number`` to this process when its parent dies (no-op elsewhere).

    Args:
        parent_pid: the parent's pid, taken before the fork: a parent that died between the fork
            and this call sends nothing, so the signal is then sent at once.
    """
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal_number, 0, 0, 0)
        if parent_pid is not None and os.getppid() != parent_pid:
            os.kill(os.getpid(), signal_number)


def process_map(function: Callable[..., Any], *iterables: Iterable, workers: int, chunksize: int = 1) -> Iterator[Any]:
    """``map(function, *iterables)`` in order, in ``workers`` processes (in this one when 1).
    Workers hold nothing worth saving: they are killed if the process that started them dies."""
    if workers == 1:
        yield from map(function, *iterables)
        return
    with ProcessPoolExecutor(
        max_workers=workers, initializer=die_with_parent, initargs=(signal.SIGKILL, os.getpid())
    ) as pool:
        yield from pool.map(function, *iterables, chunksize=chunksize)
