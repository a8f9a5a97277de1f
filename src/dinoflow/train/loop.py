"""The DINO training loop: one readable function, phases marked.

- [0]: Caron et al., DINO, 2021, https://arxiv.org/abs/2104.14294 (Alg. 1)
- [1]: Oquab et al., DINOv2, 2023, https://arxiv.org/abs/2304.07193 (KoLeo; §5 distillation)
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from dinoflow.config import ConfigError, PretrainConfig, scaled_lr, to_dict
from dinoflow.data.loader import epoch_order, run_loader
from dinoflow.data.masking import sample_batch_masks
from dinoflow.data.shards import ShardReader
from dinoflow.models.backbone import use_fused_attention
from dinoflow.train import builders, distill, sharding
from dinoflow.train.budget import Calibration, iterations_for_budget, keep_calibrating, step_seconds
from dinoflow.train.checkpoint import (
    BACKBONE_NAME,
    CHECKPOINT_NAME,
    HEAD_NAME,
    export_teacher_backbone,
    load_checkpoint,
    save_checkpoint,
    teacher_backbone_state,
    teacher_head_state,
)
from dinoflow.train.distributed import DistEnv, all_reduce_max, all_reduce_mean, ensure_process_group
from dinoflow.train.health import teacher_health, warn_on_collapse
from dinoflow.train.optim import build_optimizer
from dinoflow.train.preemption import Preempted, PreemptionFlag
from dinoflow.train.schedules import Schedules
from dinoflow.train.sinks import MetricsSink
from dinoflow.train.step import NonFiniteLossError, StepResult, TrainParts, train_step
from dinoflow.train.warm_start import RECORD_NAME, init_folder, warm_start

__all__ = ["BatchStream", "NonFiniteLossError", "sample_seed", "step_seed", "train"]

log = logging.getLogger(__name__)


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


def _frozen_teacher(cfg: PretrainConfig, folder: Path | None, student: nn.Module) -> nn.Module | None:
    """The distillation teacher from ``folder`` (None: no distillation); refused under FSDP."""
    if folder is None:
        return None
    if cfg.run.parallelism == "fsdp":
        raise ConfigError(
            f"pretrain.distill_from={cfg.distill_from!r} with run.parallelism='fsdp': distillation runs under ddp "
            "only (the frozen teacher is not sharded yet); set pretrain.run.parallelism: ddp"
        )
    distill.prepare_student(student)
    return distill.load_teacher(folder, cfg)


def _build(
    cfg: PretrainConfig, env: DistEnv, device: torch.device, probe, init: Path | None, teacher_dir: Path | None = None
) -> tuple[TrainParts, dict[str, str] | None]:
    """The networks, optimizer and losses; with ``init``, warm-started (returns the warm-start record);
    with ``teacher_dir``, with the frozen distillation teacher read from there."""
    student, teacher = builders.build_student_teacher(cfg)
    # Before DDP broadcasts rank 0's weights and FSDP shards them; every rank reads the same files.
    record = warm_start(student, teacher, init, cfg) if init is not None else None
    frozen = _frozen_teacher(cfg, teacher_dir, student)
    student, teacher = student.to(device), teacher.to(device)
    frozen = frozen.to(device) if frozen is not None else None
    if cfg.model.fused_attn is None:
        for network in (student, teacher, *([frozen] if frozen is not None else [])):
            use_fused_attention(network, device.type == "cuda")
    dino_loss, ibot_loss = builders.build_losses(cfg)
    if cfg.run.compile:  # in place, per block: parameter names (and checkpoints) stay unchanged
        for block in [*student.backbone.blocks, *teacher.backbone.blocks]:
            block.compile()
    if cfg.run.parallelism == "fsdp":  # before the optimizer: sharding replaces the parameters by DTensors
        if probe is not None:
            raise ValueError("probes evaluate on rank 0 alone; use run.parallelism=ddp with them")
        if cfg.optim.time_budget_minutes is not None:
            raise ValueError(
                "optim.time_budget_minutes is not supported with run.parallelism=fsdp (calibration would have to"
                " undo sharded steps); set optim.epochs instead"
            )
        ensure_process_group(device)
        sharding.shard(student), sharding.shard(teacher, forward_only=True)
        model = student  # FSDP reduce-scatters the gradients itself
    else:
        model = DistributedDataParallel(student) if dist.is_initialized() else student
    m = cfg.optim
    optimizer = build_optimizer(student, len(student.backbone.blocks), m.layer_decay, m.patch_embed_lr_mult)
    return TrainParts(
        cfg, device, student, teacher, model, optimizer, dino_loss.to(device),
        ibot_loss.to(device) if ibot_loss is not None else None, frozen,
    ), record  # fmt: skip


def _calibrate(
    parts: TrainParts, stream: BatchStream, schedules: Schedules, env: DistEnv, loop_started: float
) -> Calibration:
    """Time real steps (``keep_calibrating``), undo them, and fix the budgeted iteration count.

    The steps run on the run's first batches with the epoch schedules, then every network,
    optimizer and loss state is put back, so the real run starts from the same state as an
    unbudgeted one would (the RNG is re-seeded per step anyway).
    """
    budget = parts.cfg.optim.time_budget_minutes * 60
    before = copy.deepcopy(parts.state())
    times: list[float] = []
    for it in range(schedules.total_iters):
        if not all_reduce_max(float(keep_calibrating(times, budget))):  # ranks must step together (DDP)
            break
        tick = time.perf_counter()
        crops, masks = stream.get(it)
        train_step(parts, it, crops, masks, schedules)
        times.append(time.perf_counter() - tick)
    parts.load_state(before)
    seconds = all_reduce_max(step_seconds(times))
    spent = time.perf_counter() - loop_started
    calibration = Calibration(budget, seconds, spent, iterations_for_budget(budget, spent, seconds))
    log.info(
        "time budget %.1f min: %.3f s per iteration measured over %d steps -> %d iterations",
        budget / 60, seconds, len(times), calibration.total_iters,
    )  # fmt: skip
    return calibration


def train(
    cfg: PretrainConfig,
    dataset_dir: Path,
    output_dir: Path,
    sink: MetricsSink,
    env: DistEnv,
    device: torch.device,
    preemption: PreemptionFlag | None = None,
    probe: Callable[[int, nn.Module], None] | None = None,
    probe_every: int = 0,
) -> dict:
    """Pretrain on the train split of the dataset in ``dataset_dir``; checkpoints go to ``output_dir``.

    Resumes from ``output_dir/checkpoint.pt`` when present; a fresh run with ``init_from`` first
    loads that backbone into student and teacher (``warm_start``; its record: ``warm_start.json``).
    With ``optim.time_budget_minutes`` a fresh run first calibrates its iteration count
    (``_calibrate``). Returns a summary dict.

    Args:
        preemption: when it reports a SIGTERM, checkpoint and raise ``Preempted``.
        probe: called on rank 0 with (iteration, teacher backbone) every ``probe_every``
            iterations and at the end (tuning scores and prunes trials through it).
    """
    # --- build -------------------------------------------------------------------------
    loop_started = time.perf_counter()
    images = ShardReader.from_index(dataset_dir, "train")
    batch = cfg.optim.batch_size_per_rank
    iters_per_epoch = len(images) // (batch * env.world_size)
    if iters_per_epoch == 0:
        raise ValueError(
            f"optim.batch_size_per_rank={batch} x {env.world_size} ranks exceeds the {len(images)} training images"
        )
    fsdp = cfg.run.parallelism == "fsdp"
    # A resumed run's checkpoint holds every weight: the warm start is for a run's first start only.
    resuming = (output_dir / (sharding.SHARDED_CHECKPOINT_NAME if fsdp else CHECKPOINT_NAME)).exists()
    if resuming and cfg.init_from is not None:
        log.info("resuming from the checkpoint in %s: the warm start from %s is not applied again", output_dir,
                 cfg.init_from)  # fmt: skip
    teacher_dir = distill.teacher_folder(cfg, output_dir)  # resumed too: the frozen teacher is not checkpointed
    parts, record = _build(
        cfg, env, device, probe, None if resuming else init_folder(cfg.init_from, output_dir), teacher_dir
    )
    if record is not None and env.is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / RECORD_NAME).write_text(json.dumps(record, indent=2) + "\n")
    if parts.distill_teacher is not None and env.is_main:
        distill.write_record(output_dir, parts.distill_teacher, parts.student, cfg, teacher_dir)
    student, teacher, optimizer = parts.student, parts.teacher, parts.optimizer
    stream = BatchStream(images, cfg, env, device, student.backbone.patch_embed.patch_size[0])
    peak_lr = scaled_lr(cfg.optim.base_lr, batch, env.world_size)
    networks = {"student": student, "teacher": teacher}
    loss_state = {f"dino_loss.{k}": v for k, v in parts.dino_loss.state_dict().items()}
    if parts.ibot_loss is not None:
        loss_state.update({f"ibot_loss.{k}": v for k, v in parts.ibot_loss.state_dict().items()})

    # --- resume (a budgeted run keeps the iteration count it calibrated) -----------------
    start_iter, calibration = 0, None
    if fsdp and resuming:
        start_iter = sharding.load_sharded(networks, optimizer, loss_state, output_dir)["iteration"]
        log.info("resumed from %s at iteration %d", output_dir / sharding.SHARDED_CHECKPOINT_NAME, start_iter)
    elif resuming:
        state = load_checkpoint(output_dir / CHECKPOINT_NAME)
        parts.load_state(state)
        start_iter = state["iteration"]
        if "calibration" in state:
            calibration = Calibration.from_dict(state["calibration"])
        log.info("resumed from %s at iteration %d", output_dir / CHECKPOINT_NAME, start_iter)
    schedules = builders.build_run_schedules(cfg, iters_per_epoch, peak_lr)
    if cfg.optim.time_budget_minutes is not None:
        if calibration is None:
            if start_iter:
                raise ValueError(
                    f"{output_dir / CHECKPOINT_NAME} has no calibrated iteration count: it was written by a run"
                    " without optim.time_budget_minutes; resume it with the same config or use a new output folder"
                )
            calibration = _calibrate(parts, stream, schedules, env, loop_started)
        schedules = builders.build_run_schedules(cfg, iters_per_epoch, peak_lr, calibration.total_iters)
    run_state = {"config": to_dict(cfg), **({"calibration": calibration.as_dict()} if calibration else {})}

    def checkpoint(next_iter: int) -> None:
        if fsdp:  # every rank writes its shards
            sharding.save_sharded(networks, optimizer, loss_state, {"iteration": next_iter, **run_state}, output_dir)
        elif env.is_main:
            save_checkpoint(
                {**parts.state(), "iteration": next_iter, **run_state}, output_dir, keep=cfg.run.keep_checkpoints
            )

    total = schedules.total_iters
    train_started = time.perf_counter()
    last_metrics: dict[str, float] = {}
    tick, images_seen = time.perf_counter(), 0
    # A bar on an interactive terminal only (rank 0); launched jobs log a line every log_every steps.
    progress = tqdm(total=total, initial=start_iter, desc="pretrain", unit="it", disable=None if env.is_main else True)
    for it in range(start_iter, total):
        try:
            crops, masks = stream.get(it)
        except RuntimeError as error:
            if preemption is None or not preemption.requested or (fsdp and env.enabled):
                raise
            # A loader worker got the same SIGTERM while still in our process group (between its
            # fork and its init function): a preemption all the same, from the last full step.
            checkpoint(it)
            progress.close()
            raise Preempted(it) from error
        step = train_step(parts, it, crops, masks, schedules)
        images_seen += batch * env.world_size

        if (it + 1) % cfg.run.log_every == 0 or it + 1 == total:
            last_metrics = _step_metrics(
                parts, step, schedules, it, iters_per_epoch, images_seen / (time.perf_counter() - tick)
            )
            if env.is_main:
                warn_on_collapse(last_metrics, it + 1)
                sink.log_metrics(last_metrics, step=it + 1)
                log.info("it %d/%d %s", it + 1, total, _fmt(last_metrics))
            tick, images_seen = time.perf_counter(), 0

        progress.update(1)
        if probe is not None and probe_every and ((it + 1) % probe_every == 0 or it + 1 == total) and env.is_main:
            probe(it + 1, teacher.backbone)  # e.g. online k-NN for tuning; may raise to stop the run

        stop = preemption is not None and preemption.should_stop()
        if (it + 1) % cfg.run.checkpoint_every == 0 or it + 1 == total or stop:
            checkpoint(it + 1)
        if stop and it + 1 < total:
            progress.close()
            raise Preempted(it + 1)

    progress.close()
    stream.close()
    if fsdp:  # gathered once at the end, for evaluation and export (collective)
        full = {name: sharding.full_state(network) for name, network in networks.items()}
        if env.is_main:
            save_checkpoint({**full, "iteration": total, **run_state}, output_dir)
            export_teacher_backbone(teacher_backbone_state(full), output_dir / BACKBONE_NAME)
            export_teacher_backbone(teacher_head_state(full["teacher"]), output_dir / HEAD_NAME)
    elif env.is_main:
        export_teacher_backbone(teacher.backbone.state_dict(), output_dir / BACKBONE_NAME)
        # The heads too, so that this run (or its registered version) can teach a distillation.
        export_teacher_backbone(teacher_head_state(teacher.state_dict()), output_dir / HEAD_NAME)
    if parts.distill_teacher is not None and env.is_main:  # proof that the teacher stayed frozen
        distill.write_record(output_dir, parts.distill_teacher)
    return {
        "iterations": total,
        "loop_seconds": time.perf_counter() - train_started,  # this process's iterations (not setup)
        "iters_per_epoch": iters_per_epoch,
        "peak_lr": peak_lr,
        **({f"budget_{k}": v for k, v in calibration.as_dict().items()} if calibration else {}),
        **last_metrics,
    }


def _step_metrics(
    parts: TrainParts, step: StepResult, schedules: Schedules, it: int, iters_per_epoch: int, images_per_s: float
) -> dict[str, float]:
    """The record logged every ``run.log_every`` iterations (losses, schedules, teacher health)."""
    probs = parts.dino_loss.teacher_probs(step.teacher_out.cls_logits, step.teacher_temp)
    return {
        "loss": float(all_reduce_mean(step.loss.detach().float())),
        **{name: float(value.detach()) for name, value in step.losses.items()},
        "lr": float(schedules.lr[it]),
        "weight_decay": float(schedules.weight_decay[it]),
        "teacher_momentum": step.momentum,
        "teacher_temp": step.teacher_temp,
        "grad_norm": step.grad_norm,
        "epoch": float(it // iters_per_epoch),
        "images_per_s": images_per_s,
        **teacher_health(probs, step.teacher_out.cls_features, float(step.losses["loss_dino"].detach())),
    }


def _fmt(metrics: dict[str, float]) -> str:
    keys = (
        "loss",
        "lr",
        "teacher_temp",
        "teacher_entropy",
        "teacher_batch_entropy",
        "images_per_s",
    )
    return " ".join(f"{k}={metrics[k]:.4g}" for k in keys if k in metrics)
