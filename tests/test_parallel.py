"""Process maps keep order and their workers die with the process that started them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import psutil

from dinoflow.parallel import process_map


def square(x: int) -> int:
    return x * x


def test_process_map_keeps_order_in_processes_and_in_this_one():
    assert list(process_map(square, range(7), workers=2)) == list(process_map(square, range(7), workers=1))
    assert list(process_map(square, range(7), workers=1)) == [0, 1, 4, 9, 16, 25, 36]


def test_workers_are_killed_when_their_parent_is_killed():
    # Each worker writes its pid in one write(2): two print() calls can interleave on the shared pipe.
    script = textwrap.dedent(
        """
        import os, sys, time
        from dinoflow.parallel import process_map
        def hang(_):
            os.write(1, b"%d\\n" % os.getpid())
            time.sleep(600)
        list(process_map(hang, range(2), workers=2))
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    worker_pids = [int(parent.stdout.readline()) for _ in range(2)]
    workers = [psutil.Process(pid) for pid in worker_pids]
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    _, alive = psutil.wait_procs(workers, timeout=30)
    assert alive == []
