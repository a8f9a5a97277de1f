"""A rank's batches, in an order that depends only on the seed: the same views whatever the world
size, and a resumed run repeats exactly what an uninterrupted one would have done.

- [0]: Caron et al., DINO, 2021 (multi-crop, §3.1); [1]: Zhou et al., iBOT, 2022 (block masks)
"""

from __future__ import annotations

from functools import partial

import numpy as np
import torch

from dinoflow.config import PretrainConfig
from dinoflow.data.loader import epoch_order, run_loader
from dinoflow.data.masking import sample_batch_masks
from dinoflow.data.shards import ShardReader
from dinoflow.train import builders
from dinoflow.train.distributed import DistEnv


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """Augmentation randomness of one sample: the same views whatever rank or batch it lands in."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


def step_seed(seed: int, iteration: int, rank: int) -> int:
    """The rest of a step's randomness (masks, drop path) derives from (seed, iteration, rank), so
    a resumed run repeats exactly what an uninterrupted one would have done."""
    return int(np.random.SeedSequence([seed, iteration, rank]).generate_state(1)[0])


class BatchStream:
    """This rank's views for iteration ``it``: the epoch's batch (read, and on CPU augmented, by the
    loader workers), the iBOT masks, and the step's torch seed. Asking for an iteration out of order
    (resume, or the first real step after calibration) restarts the loader at that point."""

    def __init__(self, images: ShardReader, cfg: PretrainConfig, env: DistEnv, device: torch.device, patch_size: int):
        self.images, self.cfg, self.env, self.device = images, cfg, env, device
        self.batch = cfg.optim.batch_size_per_rank
        self.iters_per_epoch = len(images) // (self.batch * env.world_size)
        self.augment = builders.build_augmentation(cfg)
        # On CPU the loader workers make the crops while this process trains (same crops, see loader.py).
        self.augment_in_loader = device.type == "cpu" and cfg.run.loader_workers > 0
        self.mask_generator = builders.build_mask_generator(cfg, patch_size) if cfg.loss.ibot_weight > 0 else None
        self._batches, self._next_it, self.indices = None, -1, None

    def get(self, it: int) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """(crops, masks) of iteration ``it``; also seeds torch for the step (drop path)."""
        cfg, env = self.cfg, self.env
        epoch = it // self.iters_per_epoch
        if self._batches is None or it != self._next_it:
            order_of = partial(epoch_order, len(self.images), cfg.run.seed, rank=env.rank, world_size=env.world_size,
                               batch=self.batch)  # fmt: skip
            in_loader = (self.augment, partial(sample_seed, cfg.run.seed)) if self.augment_in_loader else ()
            pin = self.device.type == "cuda"
            self._batches = iter(run_loader(self.images, order_of, it, cfg.run.loader_workers, pin, *in_loader))
        data = next(self._batches)
        self._next_it, self.indices = it + 1, data["indices"]  # (B,) sample indices of this batch
        torch.manual_seed(step_seed(cfg.run.seed, it, env.rank))  # drop path and other torch RNG users
        if self.augment_in_loader:
            crops = data["crops"]
        else:
            seeds = [sample_seed(cfg.run.seed, epoch, int(i)) for i in data["indices"]]
            crops = self.augment(data["images"].to(self.device, non_blocking=True), seeds, data["sizes"])
        masks = None
        if self.mask_generator is not None:  # iBOT: block masks for the student's global crops
            rng = np.random.default_rng([cfg.run.seed, it, env.rank])
            masks = sample_batch_masks(
                self.mask_generator, 2 * self.batch, cfg.loss.ibot_mask_ratio, cfg.loss.ibot_masked_share, rng
            ).to(self.device)
        return crops, masks

    def close(self) -> None:
        self._batches = None  # shuts the loader workers down
