"""The DINO training loop: one readable function, phases marked.

- [0]: Caron et al., DINO, 2021, https://arxiv.org/abs/2104.14294 (Alg. 1)
- [1]: Oquab et al., DINOv2, 2023, https://arxiv.org/abs/2304.07193 (KoLeo)
"""

from __future__ import annotations

import contextlib
import logging
import math
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

from dinoflow.config import PretrainConfig, scaled_lr, to_dict
from dinoflow.data.loader import epoch_loader, epoch_order
from dinoflow.data.masking import sample_batch_masks
from dinoflow.data.shards import ShardReader
from dinoflow.losses.koleo_loss import koleo_loss
from dinoflow.models.backbone import use_fused_attention
from dinoflow.models.teacher import update_teacher
from dinoflow.train import builders, failpoints, sharding
from dinoflow.train.checkpoint import (
    BACKBONE_NAME,
    CHECKPOINT_NAME,
    export_teacher_backbone,
    load_checkpoint,
    save_checkpoint,
    teacher_backbone_state,
)
from dinoflow.train.distributed import DistEnv, all_reduce_mean, ensure_process_group
from dinoflow.train.health import clip_gradients, teacher_health, warn_on_collapse
from dinoflow.train.optim import apply_schedules, build_optimizer
from dinoflow.train.preemption import Preempted, PreemptionFlag
from dinoflow.train.sinks import MetricsSink

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """The loss became NaN/inf; the last good checkpoint is kept."""


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """Augmentation randomness of one sample: the same views whatever rank or batch it lands in."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


def step_seed(seed: int, iteration: int, rank: int) -> int:
    """The rest of a step's randomness (masks, drop path) derives from (seed, iteration, rank), so
    a resumed run repeats exactly what an uninterrupted one would have done."""
    return int(np.random.SeedSequence([seed, iteration, rank]).generate_state(1)[0])


def _autocast(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


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

    Resumes from ``output_dir/checkpoint.pt`` when present. Returns a summary dict.

    Args:
        preemption: when it reports a SIGTERM, checkpoint and raise ``Preempted``.
        probe: called on rank 0 with (iteration, teacher backbone) every ``probe_every``
            iterations and at the end (tuning scores and prunes trials through it).
    """
    # --- build -------------------------------------------------------------------------
    images = ShardReader.from_index(dataset_dir, "train")
    batch = cfg.optim.batch_size_per_rank
    iters_per_epoch = len(images) // (batch * env.world_size)
    if iters_per_epoch == 0:
        raise ValueError(
            f"optim.batch_size_per_rank={batch} x {env.world_size} ranks exceeds the {len(images)} training images"
        )
    student, teacher = builders.build_student_teacher(cfg)
    student, teacher = student.to(device), teacher.to(device)
    if cfg.model.fused_attn is None:
        for network in (student, teacher):
            use_fused_attention(network, device.type == "cuda")
    dino_loss, ibot_loss = builders.build_losses(cfg)
    dino_loss = dino_loss.to(device)
    ibot_loss = ibot_loss.to(device) if ibot_loss is not None else None
    augment = builders.build_augmentation(cfg)
    # On CPU the loader workers make the crops while this process trains (same crops, see loader.py).
    augment_in_loader = device.type == "cpu" and cfg.run.loader_workers > 0
    patch_size = student.backbone.patch_embed.patch_size[0]
    mask_generator = builders.build_mask_generator(cfg, patch_size) if ibot_loss is not None else None
    num_layers = len(student.backbone.blocks)
    if cfg.run.compile:  # in place, per block: parameter names (and checkpoints) stay unchanged
        for block in [*student.backbone.blocks, *teacher.backbone.blocks]:
            block.compile()
    fsdp = cfg.run.parallelism == "fsdp"
    if fsdp:  # before the optimizer: sharding replaces the parameters by DTensors
        if probe is not None:
            raise ValueError("probes evaluate on rank 0 alone; use run.parallelism=ddp with them")
        ensure_process_group(device)
        sharding.shard(student), sharding.shard(teacher, forward_only=True)
        model = student  # FSDP reduce-scatters the gradients itself
    else:
        model = DistributedDataParallel(student) if dist.is_initialized() else student
    optimizer = build_optimizer(student, num_layers, cfg.optim.layer_decay, cfg.optim.patch_embed_lr_mult)
    peak_lr = scaled_lr(cfg.optim.base_lr, batch, env.world_size)
    schedules = builders.build_run_schedules(cfg, iters_per_epoch, peak_lr)
    networks = {"student": student, "teacher": teacher}
    loss_state = {f"dino_loss.{k}": v for k, v in dino_loss.state_dict().items()}
    if ibot_loss is not None:
        loss_state.update({f"ibot_loss.{k}": v for k, v in ibot_loss.state_dict().items()})

    # --- resume ------------------------------------------------------------------------
    start_iter = 0
    if fsdp and (output_dir / sharding.SHARDED_CHECKPOINT_NAME).exists():
        start_iter = sharding.load_sharded(networks, optimizer, loss_state, output_dir)["iteration"]
        log.info("resumed from %s at iteration %d", output_dir / sharding.SHARDED_CHECKPOINT_NAME, start_iter)
    elif not fsdp and (output_dir / CHECKPOINT_NAME).exists():
        state = load_checkpoint(output_dir / CHECKPOINT_NAME)
        student.load_state_dict(state["student"])
        teacher.load_state_dict(state["teacher"])
        optimizer.load_state_dict(state["optimizer"])
        dino_loss.load_state_dict(state["dino_loss"])
        if ibot_loss is not None:
            ibot_loss.load_state_dict(state["ibot_loss"])
        start_iter = state["iteration"]
        log.info("resumed from %s at iteration %d", output_dir / CHECKPOINT_NAME, start_iter)

    def checkpoint(next_iter: int) -> None:
        if fsdp:  # every rank writes its shards
            meta = {"iteration": next_iter, "config": to_dict(cfg)}
            sharding.save_sharded(networks, optimizer, loss_state, meta, output_dir)
        elif env.is_main:
            save_checkpoint(
                {
                    "student": student.state_dict(),
                    "teacher": teacher.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "dino_loss": dino_loss.state_dict(),
                    **({"ibot_loss": ibot_loss.state_dict()} if ibot_loss is not None else {}),
                    "iteration": next_iter,
                    "config": to_dict(cfg),
                },
                output_dir,
                keep=cfg.run.keep_checkpoints,
            )

    total = schedules.total_iters
    loop_started = time.perf_counter()
    last_metrics: dict[str, float] = {}
    tick, images_seen = time.perf_counter(), 0
    # A bar on an interactive terminal only (rank 0); launched jobs log a line every log_every steps.
    progress = tqdm(total=total, initial=start_iter, desc="pretrain", unit="it", disable=None if env.is_main else True)
    batches = None
    for it in range(start_iter, total):
        epoch, step_in_epoch = divmod(it, iters_per_epoch)
        # --- apply schedules -----------------------------------------------------------
        apply_schedules(
            optimizer,
            schedules.lr[it],
            schedules.weight_decay[it],
            schedules.last_layer_lr_scale[it],
        )
        teacher_temp = float(schedules.teacher_temp[it])

        # --- data: this rank's batch, read (and on CPU augmented) by the loader workers ------
        if batches is None or step_in_epoch == 0:  # a resumed run starts mid-epoch
            order = epoch_order(len(images), cfg.run.seed, epoch, env.rank, env.world_size, batch)
            in_loader = (augment, partial(sample_seed, cfg.run.seed, epoch)) if augment_in_loader else ()
            batches = iter(
                epoch_loader(images, order, step_in_epoch, cfg.run.loader_workers, device.type == "cuda", *in_loader)
            )
        try:
            data = next(batches)
        except RuntimeError as error:
            if preemption is None or not preemption.requested or (fsdp and env.enabled):
                raise
            # A loader worker got the same SIGTERM while still in our process group (between its
            # fork and its init function): a preemption all the same, from the last full step.
            checkpoint(it)
            progress.close()
            raise Preempted(it) from error
        torch.manual_seed(step_seed(cfg.run.seed, it, env.rank))  # drop path and other torch RNG users
        if augment_in_loader:
            crops = data["crops"]
        else:
            seeds = [sample_seed(cfg.run.seed, epoch, int(i)) for i in data["indices"]]
            crops = augment(data["images"].to(device, non_blocking=True), seeds, data["sizes"])
        masks = None
        if mask_generator is not None:  # iBOT: block masks for the student's global crops
            rng = np.random.default_rng([cfg.run.seed, it, env.rank])
            masks = sample_batch_masks(
                mask_generator, 2 * batch, cfg.loss.ibot_mask_ratio, cfg.loss.ibot_masked_share, rng
            )
            masks = masks.to(device)

        # --- forward: teacher on global crops, student on all crops ---------------------
        with _autocast(device, cfg.run.precision):
            with torch.no_grad():
                teacher_out = teacher(crops[:2], masks, apply_masks=False)
            student_out = model(crops, masks)
            losses = {"loss_dino": dino_loss(student_out.cls_logits, teacher_out.cls_logits, teacher_temp, len(crops))}
            if cfg.loss.koleo_weight > 0:
                # KoLeo per global crop on the student backbone CLS, as in DINOv2.
                losses["loss_koleo"] = cfg.loss.koleo_weight * sum(
                    koleo_loss(f) for f in student_out.cls_features[: 2 * batch].chunk(2)
                )
            if ibot_loss is not None:
                losses["loss_ibot"] = cfg.loss.ibot_weight * ibot_loss(
                    student_out.patch_logits, teacher_out.patch_logits, masks, teacher_temp
                )
            loss = sum(losses.values())
            if failpoints.armed("nan_loss", it):
                loss = loss * float("nan")
        if not math.isfinite(loss.item()):
            raise NonFiniteLossError(f"loss is {loss.item()} at iteration {it}; last checkpoint kept")

        # --- backward, clip, optimizer step ---------------------------------------------
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = clip_gradients(student.parameters(), cfg.optim.clip_grad)
        optimizer.step()

        # --- teacher EMA ------------------------------------------------------------------
        momentum = float(schedules.momentum[it])
        update_teacher(student, teacher, momentum)
        images_seen += batch * env.world_size

        # --- log ---------------------------------------------------------------------------
        if (it + 1) % cfg.run.log_every == 0 or it + 1 == total:
            elapsed = time.perf_counter() - tick
            probs = dino_loss.teacher_probs(teacher_out.cls_logits, teacher_temp)
            last_metrics = {
                "loss": float(all_reduce_mean(loss.detach().float())),
                **{name: float(value.detach()) for name, value in losses.items()},
                "lr": float(schedules.lr[it]),
                "weight_decay": float(schedules.weight_decay[it]),
                "teacher_momentum": momentum,
                "teacher_temp": teacher_temp,
                "grad_norm": grad_norm,
                "epoch": float(epoch),
                "images_per_s": images_seen / max(elapsed, 1e-9),
                **teacher_health(probs, teacher_out.cls_features, float(losses["loss_dino"].detach())),
            }
            if env.is_main:
                warn_on_collapse(last_metrics, it + 1)
                sink.log_metrics(last_metrics, step=it + 1)
                log.info("it %d/%d %s", it + 1, total, _fmt(last_metrics))
            tick, images_seen = time.perf_counter(), 0

        progress.update(1)
        if probe is not None and probe_every and ((it + 1) % probe_every == 0 or it + 1 == total) and env.is_main:
            probe(it + 1, teacher.backbone)  # e.g. online k-NN for tuning; may raise to stop the run

        # --- checkpoint ----------------------------------------------------------------------
        stop = preemption is not None and preemption.should_stop()
        if (it + 1) % cfg.run.checkpoint_every == 0 or it + 1 == total or stop:
            checkpoint(it + 1)
        if stop and it + 1 < total:
            progress.close()
            raise Preempted(it + 1)

    progress.close()
    if fsdp:  # gathered once at the end, for evaluation and export (collective)
        full = {name: sharding.full_state(network) for name, network in networks.items()}
        if env.is_main:
            save_checkpoint({**full, "iteration": total, "config": to_dict(cfg)}, output_dir)
            export_teacher_backbone(teacher_backbone_state(full), output_dir / BACKBONE_NAME)
    elif env.is_main:
        export_teacher_backbone(teacher.backbone.state_dict(), output_dir / BACKBONE_NAME)
    return {
        "iterations": total,
        "loop_seconds": time.perf_counter() - loop_started,  # this process's iterations (not setup)
        "iters_per_epoch": iters_per_epoch,
        "peak_lr": peak_lr,
        **last_metrics,
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
