"""The DINO training loop: build the run, then one ``train_step`` per iteration, with logging,
probes and checkpoints around it.

- [0]: Caron et al., DINO, 2021, https://arxiv.org/abs/2104.14294 (Alg. 1)
- [1]: Oquab et al., DINOv2, 2023, https://arxiv.org/abs/2304.07193 (KoLeo; §5 distillation)
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from dinoflow.config import PretrainConfig, scaled_lr, to_dict
from dinoflow.data.shards import ShardReader
from dinoflow.train import builders, distill
from dinoflow.train.assemble import build_parts
from dinoflow.train.batches import BatchStream
from dinoflow.train.budget import Calibration, iterations_for_budget, keep_calibrating, step_seconds
from dinoflow.train.checkpointer import FullCheckpointer, has_checkpoint, make_checkpointer
from dinoflow.train.distributed import DistEnv, all_reduce_max, all_reduce_mean
from dinoflow.train.health import teacher_health, warn_on_collapse
from dinoflow.train.preemption import Preempted, PreemptionFlag
from dinoflow.train.run_files import RANDOM_INIT_NAME
from dinoflow.train.schedules import Schedules
from dinoflow.train.sinks import MetricsSink
from dinoflow.train.step import NonFiniteLossError, StepResult, TrainParts, train_step
from dinoflow.train.warm_start import RECORD_NAME, init_folder

__all__ = ["NonFiniteLossError", "Run", "StepLog", "start_run", "train"]

log = logging.getLogger(__name__)


@dataclass
class Run:
    """A built run, ready for iteration ``start_iter`` (0, or where its checkpoint left off)."""

    parts: TrainParts
    stream: BatchStream
    schedules: Schedules  # per-iteration values, ``total_iters`` long (calibrated under a time budget)
    checkpointer: FullCheckpointer
    start_iter: int
    iters_per_epoch: int
    peak_lr: float
    calibration: Calibration | None

    @property
    def total(self) -> int:
        return self.schedules.total_iters


def train(
    cfg: PretrainConfig,
    dataset_dir: Path,
    output_dir: Path,
    sink: MetricsSink,
    env: DistEnv,
    device: torch.device,
    preemption: PreemptionFlag | None = None,
    probe: Callable[[int, nn.Module], None] | None = None,
    probes: int = 0,
) -> dict:
    """Pretrain on the train split of the dataset in ``dataset_dir``; checkpoints go to ``output_dir``.

    Resumes from the checkpoint in ``output_dir`` when there is one; a fresh run with ``init_from``
    first loads that backbone into student and teacher (``warm_start``; its record:
    ``warm_start.json``). With ``optim.time_budget_minutes`` a fresh run first calibrates its
    iteration count (``_calibrate``). Returns a summary dict.

    Args:
        preemption: when it reports a SIGTERM, checkpoint and raise ``Preempted``.
        probe: called on rank 0 with (iteration, teacher backbone) at ``probes`` evenly spaced
            iterations, the last at the end (tuning scores and prunes trials through it). Spacing
            by the run's own count keeps a time-budgeted run's probes at the same fractions of
            its schedules as an epoch-counted one's.
    """
    run = start_run(cfg, dataset_dir, output_dir, env, device, probe)
    step_log = StepLog(run, env, sink)
    train_started = time.perf_counter()
    # A bar on an interactive terminal only (rank 0); launched jobs log a line every log_every steps.
    progress = tqdm(
        total=run.total, initial=run.start_iter, desc="pretrain", unit="it", disable=not env.is_main or None
    )
    probe_at = {round(run.total * (k + 1) / probes) for k in range(probes)} if probe is not None else set()
    for it in range(run.start_iter, run.total):
        crops, masks = _next_batch(run, it, preemption, progress)
        step = train_step(run.parts, it, crops, masks, run.schedules)
        step_log.after(it, step)
        progress.update(1)
        last = it + 1 == run.total
        if it + 1 in probe_at and env.is_main:
            probe(it + 1, run.parts.teacher.backbone)  # e.g. online k-NN for tuning; may raise to stop the run
        stop = preemption is not None and preemption.should_stop()
        if (it + 1) % cfg.run.checkpoint_every == 0 or last or stop:
            run.checkpointer.save(it + 1)
        if stop and not last:
            progress.close()
            raise Preempted(it + 1)
    progress.close()
    run.stream.close()
    run.checkpointer.export(run.total)
    if run.parts.distill_teacher is not None and env.is_main:  # proof that the teacher stayed frozen
        distill.write_record(output_dir, run.parts.distill_teacher)
    return {
        "iterations": run.total,
        "loop_seconds": time.perf_counter() - train_started,  # this process's iterations (not setup)
        "iters_per_epoch": run.iters_per_epoch,
        "peak_lr": run.peak_lr,
        **({f"budget_{k}": v for k, v in run.calibration.as_dict().items()} if run.calibration else {}),
        **step_log.last,
    }


def start_run(
    cfg: PretrainConfig, dataset_dir: Path, output_dir: Path, env: DistEnv, device: torch.device, probe
) -> Run:
    """Build the parts, restore the checkpoint if there is one, and fix the schedules (calibrating
    a fresh time-budgeted run; a resumed one keeps the count it calibrated)."""
    loop_started = time.perf_counter()
    images = ShardReader.from_index(dataset_dir, "train")
    batch = cfg.optim.batch_size_per_rank
    iters_per_epoch = len(images) // (batch * env.world_size)
    if iters_per_epoch == 0:
        raise ValueError(
            f"optim.batch_size_per_rank={batch} x {env.world_size} ranks exceeds the {len(images)} training images"
        )
    resuming = has_checkpoint(cfg, output_dir)  # known before building: a warm start is for a first start only
    parts = _build_parts(cfg, output_dir, env, device, probe, resuming)
    stream = BatchStream(images, cfg, env, device, parts.student.backbone.patch_embed.patch_size[0])
    checkpointer = make_checkpointer(parts, output_dir, env)
    resumed = checkpointer.restore() if resuming else {}
    start_iter = resumed.get("iteration", 0)
    if resumed:
        log.info("resumed from %s at iteration %d", checkpointer.path, start_iter)
    calibration = Calibration.from_dict(resumed["calibration"]) if "calibration" in resumed else None
    peak_lr = scaled_lr(cfg.optim.base_lr, batch, env.world_size)
    schedules = builders.build_run_schedules(cfg, iters_per_epoch, peak_lr)
    if cfg.optim.time_budget_minutes is not None:
        if calibration is None:
            if start_iter:
                raise ValueError(
                    f"{checkpointer.path} has no calibrated iteration count: it was written by a run without"
                    " optim.time_budget_minutes; resume it with the same config or use a new output folder"
                )
            calibration = _calibrate(parts, stream, schedules, env, loop_started)
        schedules = builders.build_run_schedules(cfg, iters_per_epoch, peak_lr, calibration.total_iters)
    checkpointer.run_state = {"config": to_dict(cfg), **({"calibration": calibration.as_dict()} if calibration else {})}
    return Run(parts, stream, schedules, checkpointer, start_iter, iters_per_epoch, peak_lr, calibration)


def _build_parts(
    cfg: PretrainConfig, output_dir: Path, env: DistEnv, device: torch.device, probe, resuming: bool
) -> TrainParts:
    """The parts, warm-started on a run's first start only (a checkpoint holds every weight), and
    with the frozen distillation teacher (rebuilt on resume too: it is not checkpointed)."""
    if resuming and cfg.init_from is not None:
        log.info("resuming from the checkpoint in %s: the warm start from %s is not applied again", output_dir,
                 cfg.init_from)  # fmt: skip
    teacher_dir = distill.teacher_folder(cfg, output_dir)
    init = None if resuming else init_folder(cfg.init_from, output_dir)
    random_init_to = output_dir / RANDOM_INIT_NAME if env.is_main and not resuming else None
    if env.is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
    parts, record = build_parts(cfg, env, device, probe, init, teacher_dir, random_init_to)
    if record is not None and env.is_main:
        (output_dir / RECORD_NAME).write_text(json.dumps(record, indent=2) + "\n")
    if parts.distill_teacher is not None and env.is_main:
        distill.write_record(output_dir, parts.distill_teacher, parts.student, cfg, teacher_dir)
    return parts


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


def _next_batch(
    run: Run, it: int, preemption: PreemptionFlag | None, progress: tqdm
) -> tuple[list[torch.Tensor], torch.Tensor | None]:
    """The iteration's (crops, masks). A loader worker can get the SIGTERM meant for us while still
    in our process group (between its fork and its init function): that is a preemption all the
    same, checkpointed from the last full step (where one rank may save alone)."""
    try:
        return run.stream.get(it)
    except RuntimeError as error:
        if preemption is None or not preemption.requested or run.checkpointer.collective:
            raise
        run.checkpointer.save(it)
        progress.close()
        raise Preempted(it) from error


class StepLog:
    """Every ``run.log_every`` iterations (and at the last): the metrics record, logged to the sink
    and the log on rank 0; ``last`` is the latest record (it ends the run's summary)."""

    def __init__(self, run: Run, env: DistEnv, sink: MetricsSink):
        self.run, self.env, self.sink = run, env, sink
        self.last: dict[str, float] = {}
        self._tick, self._images = time.perf_counter(), 0

    def after(self, it: int, step: StepResult) -> None:
        run = self.run
        self._images += run.parts.cfg.optim.batch_size_per_rank * self.env.world_size
        if (it + 1) % run.parts.cfg.run.log_every and it + 1 != run.total:
            return
        images_per_s = self._images / (time.perf_counter() - self._tick)
        self.last = _step_metrics(run.parts, step, run.schedules, it, run.iters_per_epoch, images_per_s)
        if self.env.is_main:
            warn_on_collapse(self.last, it + 1)
            self.sink.log_metrics(self.last, step=it + 1)
            log.info("it %d/%d %s", it + 1, run.total, _fmt(self.last))
        self._tick, self._images = time.perf_counter(), 0


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
