"""A kill in the middle of a checkpoint write, or a full disk, never costs the last good checkpoint;
hostile checkpoint payloads are refused."""

from __future__ import annotations

import errno
import pickle
import subprocess
import sys
import textwrap

import pytest
import torch

from dinoflow.train import checkpoint
from dinoflow.train.checkpoint import CHECKPOINT_NAME, CheckpointWriteError, load_checkpoint, save_checkpoint

pytestmark = pytest.mark.faults


def state(iteration: int, size: int = 1000) -> dict:
    return {"iteration": iteration, "weights": torch.full((size,), float(iteration))}


def test_kill_9_in_the_middle_of_a_write_leaves_the_previous_checkpoint(tmp_path):
    save_checkpoint(state(1), tmp_path)
    # A process writes a 40 MB checkpoint and is SIGKILLed after the first bytes hit the disk.
    script = textwrap.dedent(f"""
        import os, signal, torch
        from dinoflow.train import checkpoint
        real_save = torch.save
        def save_then_die(obj, handle):
            handle.write(b"partial checkpoint bytes")
            handle.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        checkpoint.torch.save = save_then_die
        checkpoint.save_checkpoint({{"iteration": 2, "weights": torch.zeros(10_000_000)}}, {str(tmp_path)!r})
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == -9
    assert (tmp_path / (CHECKPOINT_NAME + ".tmp")).exists()  # the torn file is beside, not in place
    restored = load_checkpoint(tmp_path / CHECKPOINT_NAME)
    assert restored["iteration"] == 1 and torch.equal(restored["weights"], state(1)["weights"])
    save_checkpoint(state(3), tmp_path)  # the next write goes through over the debris
    assert load_checkpoint(tmp_path / CHECKPOINT_NAME)["iteration"] == 3


class FullDisk:
    """A file whose writes fail with ENOSPC after ``room`` bytes, as on a full volume."""

    def __init__(self, path, mode, room: int = 4096):
        self.file, self.room = open(path, mode), room  # noqa: SIM115

    def write(self, data) -> int:
        self.room -= len(data)
        if self.room < 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        return self.file.write(data)

    def __getattr__(self, name):
        return getattr(self.file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()


def test_a_full_disk_fails_loudly_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    save_checkpoint(state(1), tmp_path)
    monkeypatch.setattr(checkpoint, "open", FullDisk, raising=False)  # the OS boundary of save_checkpoint
    with pytest.raises(CheckpointWriteError, match="checkpoint of iteration 2.*previous checkpoint is kept") as raised:
        save_checkpoint(state(2, size=100_000), tmp_path)
    assert "No space left on device" in repr(raised.value.__cause__.__context__ or raised.value.__cause__)
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / CHECKPOINT_NAME)["iteration"] == 1
    assert not (tmp_path / (CHECKPOINT_NAME + ".tmp")).exists()


class Payload:
    """Unpickling this runs code."""

    def __reduce__(self):
        return (exec, ("open('PWNED', 'w').write('code ran')",))


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"iteration": 1, "evil": Payload()}, tmp_path / CHECKPOINT_NAME, pickle_protocol=pickle.HIGHEST_PROTOCOL)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        load_checkpoint(tmp_path / CHECKPOINT_NAME)
    assert not (tmp_path / "PWNED").exists()
