"""The training loader: a rank's batches, epoch after epoch, read from shards by DataLoader workers.

The epoch's sample order is a permutation seeded by (seed, epoch) only, so every rank and every
resumed run agrees on it. Rank r takes every ``world``-th sample of it (no overlap between ranks);
within a rank, batch b is assembled by worker ``b mod num_workers``, and PyTorch's DataLoader
collects workers round-robin, so the batches arrive in order 0, 1, 2, ... whatever the number of
workers. Resuming at iteration ``start`` replays exactly the batches an uninterrupted run would
have seen next.

Batches are raw uint8 images padded to the batch's largest height and width, with each image's
true size; the multi-crop transform samples its crops inside the true size and runs batched
(``multicrop.py``): on a GPU in the training process, on a CPU in the loader workers given it,
where it overlaps with the training step instead of adding to it (about a quarter of a
small-ViT step on 2 cores). A sample's crops depend only on its own seed, so they are the same
either way.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from dinoflow.data.shards import ShardReader


def epoch_order(num_samples: int, seed: int, epoch: int, rank: int, world_size: int, batch: int) -> np.ndarray:
    """This rank's sample indices for ``epoch``: (iters_per_epoch, batch).

    The incomplete last batch is dropped (as ``drop_last=True``); ranks get equal shares.
    """
    order = np.random.default_rng([seed, epoch]).permutation(num_samples)
    iters = num_samples // (batch * world_size)
    return order[rank::world_size][: iters * batch].reshape(iters, batch)


def pad_batch(images: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """[(3, h_i, w_i) uint8] → ((B, 3, H, W) uint8, (B, 2) sizes).

    Each image sits top-left in its slot; the padding repeats its last row and column, so bilinear
    sampling at the image's edge reads the edge (as it would unpadded), never black.
    """
    sizes = torch.tensor([img.shape[1:] for img in images], dtype=torch.int64).reshape(-1, 2)
    height, width = sizes.max(0).values.tolist()
    batch = torch.empty(len(images), 3, height, width, dtype=torch.uint8)
    for out, img in zip(batch, images, strict=True):
        h, w = img.shape[1:]
        out[:, :h, :w] = img
        out[:, :h, w:] = img[:, :, -1:]
        out[:, h:, :] = out[:, h - 1 : h, :]
    return batch, sizes


class RunBatches(IterableDataset):
    """One rank's batches from iteration ``start`` on, epoch after epoch (until ``stop``, or without
    end), split across DataLoader workers: iteration ``it`` is batch ``it mod E`` of epoch
    ``it div E``'s order (E batches per epoch). One loader serves the whole run: a loader per epoch
    started its workers again at every epoch, which on a folder of a few batches per epoch cost
    more than the training steps.

    Args:
        order_of: epoch → this rank's (E, batch) sample indices (``epoch_order``).
        seed_of: (epoch, sample index) → the sample's augmentation seed, with ``augment``.

    Yields ``{"images", "sizes", "indices"}``; with ``augment`` (called as ``augment(images,
    seeds, sizes)``) ``{"crops", "indices"}`` instead.
    """

    def __init__(
        self,
        reader: ShardReader,
        order_of: Callable[[int], np.ndarray],
        start: int = 0,
        stop: int | None = None,
        augment: Callable | None = None,
        seed_of: Callable[[int, int], int] | None = None,
    ) -> None:
        self.reader, self.order_of, self.start, self.stop = reader, order_of, start, stop
        self.augment, self.seed_of = augment, seed_of
        self.per_epoch = len(order_of(0))

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        order, order_epoch = None, -1
        for it in range(self.start + worker, sys.maxsize if self.stop is None else self.stop, workers):
            epoch, b = divmod(it, self.per_epoch)
            if epoch != order_epoch:
                order, order_epoch = self.order_of(epoch), epoch
            indices = order[b]
            images, sizes = pad_batch([self.reader.image(int(i)) for i in indices])
            if self.augment is None:
                yield {"images": images, "sizes": sizes, "indices": torch.from_numpy(indices.copy())}
            else:
                crops = self.augment(images, [self.seed_of(epoch, int(i)) for i in indices], sizes)
                yield {"crops": crops, "indices": torch.from_numpy(indices.copy())}


def run_loader(
    reader: ShardReader,
    order_of: Callable[[int], np.ndarray],
    start: int,
    workers: int,
    pin_memory: bool,
    augment: Callable | None = None,
    seed_of: Callable[[int, int], int] | None = None,
    stop: int | None = None,
) -> DataLoader:
    """A DataLoader over ``RunBatches`` (batches are built in the workers, not collated)."""
    return DataLoader(
        RunBatches(reader, order_of, start, stop, augment, seed_of),
        batch_size=None,
        num_workers=workers,
        pin_memory=pin_memory,
        prefetch_factor=2 if workers else None,
        worker_init_fn=_leave_process_group,
    )


def _leave_process_group(worker_id: int) -> None:
    """A SIGTERM/SIGINT for the trainer's whole process group (a launcher stopping torchrun,
    Ctrl-C) must reach the trainer, which checkpoints and then shuts its workers down itself; a
    worker killed first would crash the trainer mid-step. Workers still exit with their parent."""
    os.setpgid(0, 0)
