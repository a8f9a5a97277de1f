"""Multi-crop throughput: dinoflow's shard + batched tensor augmentation vs the DINO reference
recipe with torchvision PIL transforms decoding the original JPEG every time, and vs the best
library path on the same input: torchvision ``transforms.v2`` on the uint8 images of our shards.

All produce the DINO views (2 x 224 px global, 8 x 96 px local by default, flips, colour jitter,
grayscale, blur, solarize, normalisation) from the same 500x375 JPEGs, one thread, one process,
alternating in one run; images/s per core. Writes benchmarks/results/multicrop.json.

    python benchmarks/multicrop.py [--images 64] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter, ImageOps
from torchvision import transforms
from torchvision.transforms import v2

from dinoflow.data.loader import epoch_order, run_loader
from dinoflow.data.multicrop import IMAGENET_MEAN, IMAGENET_STD, MultiCropAugmentation
from dinoflow.data.shards import ImageRecord, ShardReader, build_dataset


class ReferenceDINOAugmentation:
    """DINO's ``DataAugmentationDINO`` (facebookresearch/dino main_dino.py), PIL-based."""

    def __init__(self, global_size: int, local_size: int, local_number: int) -> None:
        flip_and_jitter = transforms.Compose([
            transforms.RandomHorizontalFlip(p=0.5),
            transforms.RandomApply([transforms.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8),
            transforms.RandomGrayscale(p=0.2),
        ])  # fmt: skip
        normalize = transforms.Compose([transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
        crop = transforms.RandomResizedCrop
        bicubic = Image.BICUBIC
        self.global1 = transforms.Compose([crop(global_size, scale=(0.4, 1.0), interpolation=bicubic), flip_and_jitter,
                                           GaussianBlur(1.0), normalize])  # fmt: skip
        self.global2 = transforms.Compose([crop(global_size, scale=(0.4, 1.0), interpolation=bicubic), flip_and_jitter,
                                           GaussianBlur(0.1), Solarize(0.2), normalize])  # fmt: skip
        self.local = transforms.Compose([crop(local_size, scale=(0.05, 0.4), interpolation=bicubic), flip_and_jitter,
                                         GaussianBlur(0.5), normalize])  # fmt: skip
        self.local_number = local_number

    def __call__(self, image: Image.Image) -> list[torch.Tensor]:
        return [self.global1(image), self.global2(image)] + [self.local(image) for _ in range(self.local_number)]


class GaussianBlur:
    def __init__(self, p: float) -> None:
        self.p = p

    def __call__(self, image: Image.Image) -> Image.Image:
        if np.random.rand() > self.p:
            return image
        return image.filter(ImageFilter.GaussianBlur(radius=np.random.uniform(0.1, 2.0)))


class Solarize:
    def __init__(self, p: float) -> None:
        self.p = p

    def __call__(self, image: Image.Image) -> Image.Image:
        return ImageOps.solarize(image) if np.random.rand() < self.p else image


class TorchvisionV2Augmentation:
    """The same recipe with ``torchvision.transforms.v2`` on uint8 tensors, one image at a time (v2
    draws one set of parameters per call): bilinear antialiased resizes as ours, a 9-px blur kernel
    (DINOv2's tensor recipe; sigma 0.1-2 as DINO)."""

    def __init__(self, global_size: int, local_size: int, local_number: int) -> None:
        flip_and_jitter = [v2.RandomHorizontalFlip(p=0.5), v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8),
                           v2.RandomGrayscale(p=0.2)]  # fmt: skip
        normalize = [v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]

        def view(size: int, scale: tuple[float, float], blur: float, solarize: float = 0.0) -> v2.Compose:
            steps = [v2.RandomResizedCrop(size, scale=scale, antialias=True), *flip_and_jitter,
                     v2.RandomApply([v2.GaussianBlur(9, sigma=(0.1, 2.0))], p=blur)]  # fmt: skip
            return v2.Compose(steps + ([v2.RandomSolarize(128, p=solarize)] if solarize else []) + normalize)

        self.global1 = view(global_size, (0.4, 1.0), 1.0)
        self.global2 = view(global_size, (0.4, 1.0), 0.1, solarize=0.2)
        self.local = view(local_size, (0.05, 0.4), 0.5)
        self.local_number = local_number

    def __call__(self, image: torch.Tensor) -> list[torch.Tensor]:
        return [self.global1(image), self.global2(image)] + [self.local(image) for _ in range(self.local_number)]


def make_jpegs(directory: Path, count: int) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        # Smooth random content (JPEG-friendly), 500x375 like a typical photo.
        small = rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((500, 375), Image.BICUBIC)
        paths.append(directory / f"{i:04d}.jpg")
        image.save(paths[-1], quality=90)
    return paths


def time_reference(paths: list[Path], augment: ReferenceDINOAugmentation) -> float:
    start = time.perf_counter()
    for path in paths:
        with Image.open(path) as image:
            views = augment(image.convert("RGB"))
        torch.stack(views[:2])  # batching the global views, as a collate function would
    return len(paths) / (time.perf_counter() - start)


def time_dinoflow(dataset: Path, augment: MultiCropAugmentation, batch: int) -> float:
    """The training loader's path in one process: open the shards (mmap), read and pad each batch,
    augment it."""
    start = time.perf_counter()
    reader = ShardReader.from_index(dataset, "train")
    order_of = partial(epoch_order, len(reader), 0, rank=0, world_size=1, batch=batch)
    for data in run_loader(reader, order_of, start=0, workers=0, pin_memory=False, stop=len(order_of(0))):
        augment(data["images"], data["indices"].tolist(), data["sizes"])
    return order_of(0).size / (time.perf_counter() - start)


def time_torchvision_v2(dataset: Path, augment: TorchvisionV2Augmentation, batch: int) -> float:
    """The same shard reading as ``time_dinoflow``; each stored image (its unpadded region) through v2."""
    start = time.perf_counter()
    reader = ShardReader.from_index(dataset, "train")
    order_of = partial(epoch_order, len(reader), 0, rank=0, world_size=1, batch=batch)
    for data in run_loader(reader, order_of, start=0, workers=0, pin_memory=False, stop=len(order_of(0))):
        for image, (height, width) in zip(data["images"], data["sizes"].tolist(), strict=True):
            views = augment(image[:, :height, :width])
            torch.stack(views[:2])
    return order_of(0).size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--global-size", type=int, default=224)
    parser.add_argument("--local-size", type=int, default=96)
    parser.add_argument("--local-number", type=int, default=8)
    parser.add_argument("--max-side", type=int, default=256, help="shorter side of the stored images")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "multicrop.json")
    args = parser.parse_args()
    torch.set_num_threads(1)  # per core
    reference = ReferenceDINOAugmentation(args.global_size, args.local_size, args.local_number)
    ours = MultiCropAugmentation(args.global_size, (0.4, 1.0), args.local_size, (0.05, 0.4), args.local_number)
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_jpegs(Path(tmp), args.images)
        records = [ImageRecord(p, width=500, height=375) for p in paths]
        dataset = Path(tmp) / "dataset"
        build_dataset({"train": records}, [], dataset, [], max_side=args.max_side, workers=1, progress=False)
        library = TorchvisionV2Augmentation(args.global_size, args.local_size, args.local_number)
        rates = {"dinoflow": [], "reference_pil": [], "torchvision_v2_on_shards": []}
        for _ in range(args.rounds):  # alternate, so all see the same machine state
            rates["reference_pil"].append(time_reference(paths, reference))
            rates["torchvision_v2_on_shards"].append(time_torchvision_v2(dataset, library, batch=32))
            rates["dinoflow"].append(time_dinoflow(dataset, ours, batch=32))
    best = {name: max(values) for name, values in rates.items()}
    report = {
        "benchmark": "multicrop",
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "threads": 1},
        "torch": torch.__version__,
        "config": {k: v for k, v in vars(args).items() if k != "out"},
        "images_per_s_per_core": best,
        "all_rounds": rates,
        "ratio_dinoflow_over_reference": best["dinoflow"] / best["reference_pil"],
        "ratio_dinoflow_over_torchvision_v2": best["dinoflow"] / best["torchvision_v2_on_shards"],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(
        f"images/s per core: dinoflow {best['dinoflow']:.1f}, reference PIL {best['reference_pil']:.1f} "
        f"(x{report['ratio_dinoflow_over_reference']:.2f}), torchvision v2 on the shards "
        f"{best['torchvision_v2_on_shards']:.1f} (x{report['ratio_dinoflow_over_torchvision_v2']:.2f}); wrote {args.out}"
    )


if __name__ == "__main__":
    main()
