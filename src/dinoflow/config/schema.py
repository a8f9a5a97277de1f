"""Typed, validated pretraining configuration.

Every section forbids unknown keys and checks types strictly, so a typo such as
``optim.base_lrr`` fails with an error naming the key instead of being ignored. Config stops at
the builders (``dinoflow.train.builders``): losses, heads and transforms take plain arguments.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ModelConfig(_Section):
    """ViT backbone built by timm (``timm.create_model(arch, **overrides)``)."""

    arch: str = Field(default="vit_small_patch16_224", description="timm ViT name")
    patch_size: int | None = Field(default=None, ge=1, description="overrides the arch's value when set")
    embed_dim: int | None = Field(default=None, ge=8, description="overrides the arch's value when set")
    depth: int | None = Field(default=None, ge=1, description="overrides the arch's value when set")
    num_heads: int | None = Field(default=None, ge=1, description="overrides the arch's value when set")
    drop_path_rate: float = Field(default=0.1, ge=0.0, lt=1.0, description="student only")
    reg_tokens: int = Field(default=0, ge=0, description="register tokens (Darcet et al. 2023)")
    layer_scale_init: float | None = Field(default=None, gt=0.0, description="LayerScale gamma init (DINOv2: 1e-5)")
    mlp: Literal["mlp", "swiglu"] = Field(default="mlp", description="SwiGLU FFN as in DINOv2 ViT-g")
    stem: Literal["patch", "conv"] = Field(
        default="patch", description="conv: 3x3 stride-2 convolutions instead of patchify (Xiao et al. 2021)"
    )
    # On CPU, SDPA's backward is several times slower than plain matmul + softmax for ViT-length
    # sequences (a fifth of a ViT-S/16 step at 96 px): the default uses it for training on GPUs only.
    fused_attn: bool | None = Field(default=None, description="SDPA attention; null: on GPUs, not on CPUs")


class HeadConfig(_Section):
    """DINO projection head (DINO paper App. C: 3 layers, 2048 hidden, 256 bottleneck)."""

    out_dim: int = Field(default=65536, ge=2, description="prototypes K")
    hidden_dim: int = Field(default=2048, ge=1, description="MLP width")
    bottleneck_dim: int = Field(default=256, ge=1, description="width before the weight-normalised last layer")
    nlayers: int = Field(default=3, ge=1, description="MLP layers")
    norm_last_layer: bool = Field(
        default=True, description="weight-normalised last layer with fixed norm (DINO: true for ViT-S)"
    )
    ibot_separate: bool = Field(
        default=False, description="iBOT patch head: own prototypes (DINOv2 L/g) or the DINO head"
    )


class CropsConfig(_Section):
    """Multi-crop views (DINO paper §3.1, App. E)."""

    global_size: int = Field(default=224, ge=8, description="side of the 2 global crops (px)")
    global_scale: tuple[float, float] = Field(default=(0.4, 1.0), description="area range of the global crops")
    local_size: int = Field(default=96, ge=8, description="side of the local crops (px)")
    local_scale: tuple[float, float] = Field(default=(0.05, 0.4), description="area range of the local crops")
    local_number: int = Field(default=8, ge=0, description="local crops per image")
    # Colour jitter strength as a fraction of DINO's (0.4, 0.4, 0.2, 0.1); strong jitter on tiny
    # images lets the loss collapse before shapes are learnt.
    jitter_strength: float = Field(
        default=1.0, ge=0.0, le=1.0, description="fraction of DINO's colour-jitter magnitudes"
    )
    # Random per-image hues (the embedded data's colours) let two views match by colour alone; a
    # shift that can reach every hue (0.5) takes that away (docs/demo-experiments.md).
    hue_jitter: float = Field(
        default=0.1, ge=0.0, le=0.5, description="largest hue shift in turns, times jitter_strength (DINO: 0.1)"
    )
    grayscale_prob: float = Field(default=0.2, ge=0.0, le=1.0, description="share of grayscale views (DINO: 0.2)")
    # For data with no upright orientation (clip-art, microscopy, aerial images).
    rotation_degrees: float = Field(
        default=0.0, ge=0.0, le=180.0, description="each view rotated by U(-r, r) degrees (DINO: 0)"
    )

    @model_validator(mode="after")
    def _scales_ordered(self) -> CropsConfig:
        for name in ("global_scale", "local_scale"):
            low, high = getattr(self, name)
            if not 0.0 < low <= high <= 1.0:
                raise ValueError(f"{name} must satisfy 0 < low <= high <= 1, got {(low, high)}")
        return self


class LossConfig(_Section):
    """DINO loss and regularisers (DINO paper §3.1; DINOv2 §4 for KoLeo)."""

    student_temp: float = Field(default=0.1, gt=0.0, description="student softmax temperature")
    warmup_teacher_temp: float = Field(
        default=0.04, gt=0.0, description="teacher temperature at the start of its warm-up"
    )
    teacher_temp: float = Field(default=0.04, gt=0.0, description="teacher temperature after the warm-up")
    warmup_teacher_temp_epochs: int = Field(default=0, ge=0, description="linear teacher-temperature warm-up")
    center_momentum: float = Field(default=0.9, ge=0.0, lt=1.0, description="EMA of the teacher centre")
    centering: Literal["ema", "sinkhorn_knopp", "none"] = Field(
        default="ema", description='"none" collapses: ablation only'
    )
    koleo_weight: float = Field(default=0.0, ge=0.0, description="KoLeo regulariser weight (DINOv2: 0.1)")
    ibot_weight: float = Field(default=0.0, ge=0.0, description="0 disables masking and the patch loss")
    ibot_mask_ratio: tuple[float, float] = Field(default=(0.1, 0.5), description="masked share of patches, per image")
    ibot_masked_share: float = Field(default=0.5, ge=0.0, le=1.0, description="share of global crops masked")


class OptimConfig(_Section):
    """AdamW and the per-iteration schedules (DINO ``main_dino.py`` defaults)."""

    epochs: int = Field(default=100, ge=1, description="training epochs (with a time budget: the schedules' shape)")
    # Train for this many minutes instead: the run times its first steps, fixes the iteration count
    # that fits, and stretches every schedule (warm-ups keep their share of `epochs`) to end there.
    time_budget_minutes: float | None = Field(default=None, gt=0.0, description="null: train for `epochs`")
    batch_size_per_rank: int = Field(default=64, ge=2, description="images per process per step")
    base_lr: float = Field(default=5e-4, gt=0.0, description="for a total batch of 256, scaled linearly")
    min_lr: float = Field(default=1e-6, ge=0.0, description="end of the cosine schedule")
    warmup_epochs: int = Field(default=10, ge=0, description="linear lr warm-up")
    weight_decay: float = Field(default=0.04, ge=0.0, description="start of the cosine weight-decay schedule")
    weight_decay_end: float = Field(default=0.4, ge=0.0, description="end of the cosine weight-decay schedule")
    clip_grad: float = Field(default=3.0, ge=0.0, description="0 disables")
    freeze_last_layer_epochs: int = Field(default=1, ge=0, description="last head layer frozen this long (DINO)")
    layer_decay: float = Field(default=1.0, gt=0.0, le=1.0, description="lr x decay^(depth - layer) (DINOv2: 0.9)")
    patch_embed_lr_mult: float = Field(default=1.0, gt=0.0, description="DINOv2: 0.2")
    momentum_teacher: float = Field(default=0.996, ge=0.0, le=1.0, description="teacher EMA momentum at the start")
    momentum_teacher_end: float = Field(
        default=1.0, ge=0.0, le=1.0, description="teacher EMA momentum at the end (cosine)"
    )


class RunConfig(_Section):
    """How the process runs: precision, threads, logging and checkpoint cadence."""

    seed: int = Field(default=0, description="every random draw derives from it")
    precision: Literal["fp32", "bf16"] = Field(default="bf16", description="bf16 autocast or fp32")
    num_threads: int = Field(default=0, ge=0, description="0: leave torch's default")
    log_every: int = Field(default=10, ge=1, description="iterations between metric records")
    checkpoint_every: int = Field(default=100, ge=1, description="iterations between checkpoints")
    keep_checkpoints: int = Field(default=1, ge=1, description=">1 also keeps that many numbered snapshots")
    compile: bool = Field(default=False, description="torch.compile each transformer block (worth it on GPUs)")
    loader_workers: int = Field(
        default=1, ge=0, description="loader processes: read shards (on CPU: make crops); 0 = none"
    )
    parallelism: Literal["ddp", "fsdp"] = Field(
        default="ddp", description="fsdp: FSDP2 shards weights, grads and optimizer state (torchrun)"
    )


class PretrainConfig(_Section):
    """The whole pretraining run; ``preset`` names the starting point it was resolved from."""

    preset: str = Field(
        default="custom", description="named starting point from pretrain_presets (demo, small, ci, vit_s16, vit_b16)"
    )
    # dinov2: iBOT + KoLeo + Sinkhorn-Knopp + LayerScale defaults; distill: those of DINOv2 §5 (needs distill_from).
    recipe: Literal["dino", "dinov2", "distill"] = Field(
        default="dino", description="dino, dinov2 or distill (defaults: loading.RECIPES)"
    )
    # Continual pretraining: a fresh run loads that backbone into student and teacher (heads start anew);
    # a resumed run takes its weights from its checkpoint. pretrain.model.* must match the source's.
    init_from: str | None = Field(
        default=None, description="warm start: models:/<name>@<alias>, models:/<name>/<version> or a run folder"
    )
    # Distillation (DINOv2 §5): the trained backbone and heads there, frozen, give the targets; the configured
    # model is the student (no masking, no drop path). Its head.out_dim must be the teacher's.
    distill_from: str | None = Field(
        default=None, description="frozen teacher: models:/<name>@<alias>, models:/<name>/<version> or a run folder"
    )
    model: ModelConfig = ModelConfig()
    head: HeadConfig = HeadConfig()
    crops: CropsConfig = CropsConfig()
    loss: LossConfig = LossConfig()
    optim: OptimConfig = OptimConfig()
    run: RunConfig = RunConfig()

    @model_validator(mode="after")
    def _local_smaller_than_global(self) -> PretrainConfig:
        if self.crops.local_number and self.crops.local_size > self.crops.global_size:
            raise ValueError("crops.local_size must not exceed crops.global_size")
        if self.optim.warmup_epochs > self.optim.epochs:
            raise ValueError("optim.warmup_epochs must not exceed optim.epochs")
        if self.recipe == "distill" and self.distill_from is None:
            raise ValueError(
                "recipe 'distill' needs a teacher and distill_from is null: set it to models:/<name>@<alias> or a run"
                " folder"
            )
        return self
