"""The reference a user would otherwise pick: a DINO step written with lightly's building blocks
(``DINOProjectionHead``, ``DINOLoss``, ``update_momentum``, ``cosine_schedule``) on the same timm
ViT, following lightly's own DINO example: one forward per view, AdamW, gradient clipping (as
DINO does), last-layer freezing, EMA teacher. Benchmark-only: ``pip install -e '.[bench]'``.

Crops are made once, up front (random tensors): the reference pays nothing for augmentation or
data loading, while dinoflow's step is measured through its real loop, data and all.
"""

from __future__ import annotations

import copy
import time

import timm
import torch
from lightly.loss import DINOLoss
from lightly.models.modules import DINOProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.utils.scheduler import cosine_schedule
from torch import nn

from dinoflow.config import PretrainConfig


class ReferenceDINO(nn.Module):
    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def build_reference(cfg: PretrainConfig) -> tuple[ReferenceDINO, ReferenceDINO, DINOLoss]:
    m = cfg.model
    backbone = timm.create_model(m.arch, pretrained=False, num_classes=0, img_size=cfg.crops.global_size,
                                 patch_size=m.patch_size, embed_dim=m.embed_dim, depth=m.depth, num_heads=m.num_heads,
                                 drop_path_rate=m.drop_path_rate, dynamic_img_size=True)  # fmt: skip
    if m.fused_attn is False:  # null: timm's default (SDPA), what a user of the library runs
        for block in backbone.blocks:
            block.attn.fused_attn = False
    dim = backbone.embed_dim
    h = cfg.head

    def head() -> DINOProjectionHead:
        return DINOProjectionHead(dim, h.hidden_dim, h.bottleneck_dim, h.out_dim,
                                  freeze_last_layer=cfg.optim.freeze_last_layer_epochs)  # fmt: skip

    # As lightly's example: the head's weight norm cannot be deep-copied, so build it twice.
    student = ReferenceDINO(backbone, head())
    teacher = ReferenceDINO(copy.deepcopy(backbone), head())
    teacher.head.load_state_dict(student.head.state_dict())
    deactivate_requires_grad(teacher)
    loss = DINOLoss(output_dim=h.out_dim, warmup_teacher_temp=cfg.loss.warmup_teacher_temp,
                    teacher_temp=cfg.loss.teacher_temp, warmup_teacher_temp_epochs=0,
                    student_temp=cfg.loss.student_temp, center_momentum=cfg.loss.center_momentum)  # fmt: skip
    return student, teacher, loss


def reference_step(student, teacher, criterion, optimizer, views, momentum: float, autocast, clip: float) -> float:
    """One step of lightly's DINO example: EMA, teacher on the 2 global views, student on all,
    loss, backward, last-layer gradient cancelling, clipping, AdamW. Returns the loss."""
    update_momentum(student, teacher, m=momentum)
    with autocast:
        with torch.no_grad():
            teacher_out = [teacher(v) for v in views[:2]]
        student_out = [student(v) for v in views]
        loss = criterion(teacher_out, student_out, epoch=0)
    loss.backward()
    student.head.cancel_last_layer_gradients(current_epoch=0)
    torch.nn.utils.clip_grad_norm_(student.parameters(), clip or float("inf"))
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())  # as a training loop logging the loss would


def measure_reference(cfg: PretrainConfig, steps: int) -> dict:
    """images/s of the second half of ``steps`` reference steps (the first half warms up)."""
    student, teacher, criterion = build_reference(cfg)
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-4, weight_decay=0.04)
    batch, crops = cfg.optim.batch_size_per_rank, cfg.crops
    views = [torch.randn(batch, 3, crops.global_size, crops.global_size) for _ in range(2)]
    views += [torch.randn(batch, 3, crops.local_size, crops.local_size) for _ in range(crops.local_number)]
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.run.precision == "bf16")
    start = None
    for step in range(steps):
        if step == steps // 2:
            start = time.perf_counter()
        momentum = cosine_schedule(step, steps, cfg.optim.momentum_teacher, 1.0)
        reference_step(student, teacher, criterion, optimizer, views, momentum, autocast, cfg.optim.clip_grad)
    elapsed = time.perf_counter() - start
    return {"images_per_s": batch * (steps - steps // 2) / elapsed}


# The "standard recipe" a user would start from for 32 px images (DINO defaults, small ViT).
STANDARD_SMALL = {
    "model": {"arch": "vit_tiny_patch16_224", "patch_size": 4, "embed_dim": 192, "depth": 6, "num_heads": 3,
              "drop_path_rate": 0.1},
    "head": {"out_dim": 4096},
    "crops": {"global_size": 32, "local_size": 16, "local_number": 6},
    "optim": {"batch_size_per_rank": 128, "base_lr": 0.0005, "momentum_teacher": 0.996, "freeze_last_layer_epochs": 0},
    "run": {"precision": "bf16"},
}  # fmt: skip


def train_reference(cfg: PretrainConfig, train_folder, seconds: float, workers: int = 1) -> tuple[nn.Module, dict]:
    """lightly's DINO example on an image folder (``DINOTransform`` crops from PIL images, one
    loader worker) for ``seconds`` of wall time; momentum and lr follow cosines over that time.

    Returns the teacher backbone (a timm ViT) and what it saw.
    """
    import math

    from lightly.transforms.dino_transform import DINOTransform
    from torchvision.datasets import ImageFolder

    crops = cfg.crops
    transform = DINOTransform(global_crop_size=crops.global_size, local_crop_size=crops.local_size,
                              n_local_views=crops.local_number)  # fmt: skip
    loader = torch.utils.data.DataLoader(
        ImageFolder(str(train_folder), transform=transform), batch_size=cfg.optim.batch_size_per_rank,
        shuffle=True, drop_last=True, num_workers=workers, persistent_workers=workers > 0,
    )  # fmt: skip
    torch.manual_seed(cfg.run.seed)
    student, teacher, criterion = build_reference(cfg)
    peak = cfg.optim.base_lr * cfg.optim.batch_size_per_rank / 256
    optimizer = torch.optim.AdamW(student.parameters(), lr=peak, weight_decay=cfg.optim.weight_decay)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.run.precision == "bf16")
    started, steps, seen = time.perf_counter(), 0, 0
    while time.perf_counter() - started < seconds:
        for views, _ in loader:
            progress = min((time.perf_counter() - started) / seconds, 1.0)
            if progress >= 1.0:
                break
            for group in optimizer.param_groups:
                group["lr"] = peak * 0.5 * (1 + math.cos(math.pi * progress))
            momentum = cosine_schedule(int(progress * 1000), 1000, cfg.optim.momentum_teacher, 1.0)
            reference_step(student, teacher, criterion, optimizer, views, momentum, autocast, cfg.optim.clip_grad)
            steps, seen = steps + 1, seen + len(views[0])
    return teacher.backbone, {"iterations": steps, "images_seen": seen, "train_seconds": time.perf_counter() - started}
