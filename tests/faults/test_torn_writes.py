"""A kill in the middle of a checkpoint write, or a full disk, never costs the last good checkpoint;
hostile checkpoint payloads are refused."""

from __future__ import annotations

import contextlib
import pickle
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from dinoflow.train.checkpoint import CheckpointWriteError, load_checkpoint, save_checkpoint
from dinoflow.train.run_files import CHECKPOINT_NAME

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
        def save_then_die(obj, path):
            with open(path, "wb") as handle:
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


@contextlib.contextmanager
def small_volume(folder: Path, size: str) -> Iterator[Path]:
    """A real file system of ``size`` (tmpfs) mounted at ``folder``: writes beyond it fail with ENOSPC."""
    folder.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill (needs root): {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def test_a_full_disk_fails_loudly_and_keeps_the_last_good_checkpoint(tmp_path):
    with small_volume(tmp_path / "volume", "1m") as volume:
        save_checkpoint(state(1), volume)
        with pytest.raises(
            CheckpointWriteError, match="checkpoint of iteration 2 .*MiB free there.*previous checkpoint is kept"
        ):
            save_checkpoint(state(2, size=1_000_000), volume)  # 4 MB on a 1 MB volume
        assert load_checkpoint(volume / CHECKPOINT_NAME)["iteration"] == 1
        assert sorted(p.name for p in volume.iterdir()) == [CHECKPOINT_NAME]  # no temporary file left


def test_a_full_disk_while_writing_shards_or_pictures_names_the_file_and_leaves_no_part_of_it(tmp_path):
    from kedro_datasets.partitions import PartitionedDataset
    from PIL import Image

    from dinoflow.atomic import WriteFailedError
    from dinoflow.data.shards import ImageRecord, build_dataset
    from dinoflow.datasets import AtomicImageDataset
    from dinoflow.eval.pictures import plot_training_curve

    rng = np.random.default_rng(0)
    records = []
    for i in range(6):  # 6 x 3 x 256 x 256 decoded bytes: more than the volume holds
        path = tmp_path / "images" / f"{i}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(path)
        records.append(ImageRecord(path, label=0, width=256, height=256))
    with small_volume(tmp_path / "volume", "512k") as volume:
        with pytest.raises(WriteFailedError, match=r"dataset shard .*train-00000\.pt.*MiB free there"):
            build_dataset({"train": records}, ["a"], volume / "dataset", [], max_side=256, workers=1, progress=False)
        assert list((volume / "dataset").iterdir()) == []  # no shard, no index: nothing a later run could reuse
        with contextlib.suppress(OSError), open(volume / "filler", "wb") as filler:  # fill the volume up
            filler.write(b"x" * 2**20)
        records_of_a_run = [{"step": s, "loss": 1.0 / s} for s in range(1, 50)]
        pictures = PartitionedDataset(path=str(volume / "pictures"), dataset=AtomicImageDataset, filename_suffix=".png")
        with pytest.raises(Exception, match=r"catalog dataset \(AtomicImageDataset\) .*training_curve\.png.*free"):
            pictures.save({"training_curve": plot_training_curve(records_of_a_run)})  # as the catalog writes it
        assert not (volume / "pictures").exists() or list((volume / "pictures").iterdir()) == []


def test_a_full_disk_while_writing_the_manifest_or_the_onnx_file_names_it_and_keeps_the_previous_one(
    tmp_path, tiny_config
):
    import pandas as pd
    from kedro.io import DatasetError

    from dinoflow.atomic import WriteFailedError
    from dinoflow.datasets import AtomicParquetDataset
    from dinoflow.models.export import export_onnx
    from dinoflow.train.builders import build_backbone_from_config

    def manifest(rows: int) -> pd.DataFrame:
        return pd.DataFrame({"path": [f"images/{i:07d}.png" for i in range(rows)], "sha256": ["ab" * 32] * rows})

    with small_volume(tmp_path / "volume", "1m") as volume:
        dataset = AtomicParquetDataset(filepath=str(volume / "image_manifest.parquet"))  # as conf/base/catalog.yml
        dataset.save(manifest(10))
        with pytest.raises(DatasetError, match=r"catalog dataset .*image_manifest\.parquet.*MiB free there"):
            dataset.save(manifest(200_000))  # ~ 15 MB of text on a 1 MB volume
        assert len(dataset.load()) == 10  # the previous manifest, whole
        assert sorted(p.name for p in volume.iterdir()) == ["image_manifest.parquet"]

        with contextlib.suppress(OSError), open(volume / "filler", "wb") as filler:  # fill the volume up
            filler.write(b"x" * 2**20)
        backbone = build_backbone_from_config(tiny_config, drop_path=False)
        size = tiny_config.crops.global_size
        with pytest.raises(WriteFailedError, match=r"ONNX export .*backbone\.onnx.*MiB free there"):
            export_onnx(backbone, torch.randn(2, 3, size, size), volume / "backbone.onnx")
        assert sorted(p.name for p in volume.iterdir()) == ["filler", "image_manifest.parquet"]


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
