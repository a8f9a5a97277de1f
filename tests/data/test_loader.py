"""The loader splits an epoch over ranks and workers without overlap, in a fixed order."""

from functools import partial

import numpy as np
import pytest
import torch
from PIL import Image

from dinoflow.data.loader import epoch_order, run_loader
from dinoflow.data.multicrop import MultiCropAugmentation
from dinoflow.data.shards import ImageRecord, ShardReader, build_dataset
from dinoflow.train.batches import sample_seed

NUM_IMAGES, BATCH = 43, 4


@pytest.fixture(scope="module")
def reader(tmp_path_factory) -> ShardReader:
    """43 images of varied sizes in several shards; image i's top-left pixel stores i."""
    root = tmp_path_factory.mktemp("loader")
    records = []
    for i in range(NUM_IMAGES):
        pixels = np.full((10 + i % 5, 12 + i % 3, 3), 7, dtype=np.uint8)
        pixels[0, 0, 0] = i
        path = root / f"{i}.png"
        Image.fromarray(pixels).save(path)
        records.append(ImageRecord(path, width=pixels.shape[1], height=pixels.shape[0]))
    build_dataset({"train": records}, [], root / "ds", [], max_side=64, max_shard_mb=2000 / 2**20, workers=1,
                  progress=False)  # fmt: skip
    reader = ShardReader.from_index(root / "ds", "train")
    assert len(reader.paths) > 3
    return reader


def orders(rank: int, world: int):
    return partial(epoch_order, NUM_IMAGES, 5, rank=rank, world_size=world, batch=BATCH)


def read(reader: ShardReader, rank: int, world: int, workers: int, start: int, stop: int) -> list[list[int]]:
    """Iterations [start, stop) of one loader: the stored sample of each batch, checked against its index."""
    batches = []
    for batch in run_loader(reader, orders(rank, world), start, workers, pin_memory=False, stop=stop):
        stored = batch["images"][:, 0, 0, 0].tolist()
        assert stored == batch["indices"].tolist()  # the pixels are those of the indexed images
        assert (batch["sizes"][:, 0] >= 10).all()
        batches.append(stored)
    return batches


def read_epoch(reader: ShardReader, epoch: int, rank: int, world: int, workers: int, start: int = 0) -> list[list[int]]:
    per_epoch = NUM_IMAGES // (world * BATCH)
    return read(reader, rank, world, workers, epoch * per_epoch + start, (epoch + 1) * per_epoch)


def test_two_ranks_times_two_workers_see_every_sample_once_per_epoch(reader):
    for epoch in (0, 1):
        seen = [i for rank in (0, 1) for batch in read_epoch(reader, epoch, rank, 2, workers=2) for i in batch]
        usable = NUM_IMAGES // (2 * BATCH) * 2 * BATCH  # the remainder waits for the next epoch's shuffle
        assert len(seen) == len(set(seen)) == usable
    assert read_epoch(reader, 0, 0, 2, 2) != read_epoch(reader, 1, 0, 2, 2)  # reshuffled every epoch


def test_order_does_not_depend_on_the_number_of_workers(reader):
    assert read_epoch(reader, 0, 0, 1, workers=0) == read_epoch(reader, 0, 0, 1, workers=2)


def test_resume_from_a_sample_position_continues_the_same_order(reader):
    full = read_epoch(reader, 3, 1, 2, workers=2)
    assert read_epoch(reader, 3, 1, 2, workers=2, start=3) == full[3:]


def test_one_loader_runs_on_across_epochs_with_each_epochs_order(reader):
    per_epoch = NUM_IMAGES // BATCH
    for workers in (0, 2):
        across = read(reader, 0, 1, workers, start=per_epoch - 2, stop=2 * per_epoch + 1)
        expected = (
            read_epoch(reader, 0, 0, 1, 0)[-2:] + read_epoch(reader, 1, 0, 1, 0) + read_epoch(reader, 2, 0, 1, 0)[:1]
        )
        assert across == expected


def test_crops_made_in_the_workers_equal_crops_made_in_the_training_process(reader):
    """On CPU the workers run the multi-crop transform; the views must be the ones the
    training process would make from the raw batch (each sample's own seed, whatever worker)."""
    augment = MultiCropAugmentation(8, (0.3, 1.0), 4, (0.1, 0.4), local_number=2)
    per_epoch = NUM_IMAGES // BATCH
    span = (per_epoch - 1, per_epoch + 1)  # the last batch of epoch 0 and the first of epoch 1
    raw = list(run_loader(reader, orders(0, 1), span[0], 0, pin_memory=False, stop=span[1]))
    in_workers = list(run_loader(reader, orders(0, 1), span[0], 2, pin_memory=False, augment=augment,
                                 seed_of=partial(sample_seed, 5), stop=span[1]))  # fmt: skip
    assert len(raw) == len(in_workers) == 2
    for epoch, plain, made in zip((0, 1), raw, in_workers, strict=True):
        assert made["indices"].tolist() == plain["indices"].tolist() and set(made) == {"crops", "indices"}
        expected = augment(plain["images"], [sample_seed(5, epoch, int(i)) for i in plain["indices"]], plain["sizes"])
        assert len(made["crops"]) == 4
        for view, reference in zip(made["crops"], expected, strict=True):
            assert torch.equal(view, reference)
