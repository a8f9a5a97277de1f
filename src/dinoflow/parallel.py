"""Work spread over processes, and processes that die with the one that started them.

A pipeline killed with SIGKILL (the OOM killer, a drained node) cannot stop what it started; on
Linux the kernel can, when each child asks for a signal at its parent's death (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import ctypes
import signal
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(signal_number: int = signal.SIGKILL) -> None:
    """Ask Linux to send ``signal_number`` to this process when its parent dies (no-op elsewhere)."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal_number, 0, 0, 0)


def process_map(function: Callable[..., Any], *iterables: Iterable, workers: int, chunksize: int = 1) -> Iterator[Any]:
    """``map(function, *iterables)`` in order, in ``workers`` processes (in this one when 1).
    Workers hold nothing worth saving: they are killed if the process that started them dies."""
    if workers == 1:
        yield from map(function, *iterables)
        return
    with ProcessPoolExecutor(max_workers=workers, initializer=die_with_parent) as pool:
        yield from pool.map(function, *iterables, chunksize=chunksize)
