"""Evaluation speed: feature extraction images/s and weighted k-NN time, each next to a reference
measured in the same run.

- features: ``extract_features`` (bf16 autocast, the linear probes' inputs + patch tokens in
  one pass) vs a plain fp32 ``backbone(x)`` forward (the CLS feature only), for the demo
  backbone at 32 px and a ViT-S/16 at 224 px;
- k-NN: ``knn_classify_multi_k`` (k in {10, 20, 100, 200} from one top-k) on 100k train x 10k
  test features of dimension 384 vs DINO's ``knn_classifier`` (``eval_knn.py``: chunks of 100
  test samples, one-hot votes), run for k = 20 only;
- the raw-pixel baseline at the 60k benchmark's size (60,000 x 10,000 images of 32 x 32 x 3 bytes):
  the exact int8 path vs the fp32 cosine of the centred pixels;
- the linear-probe grid (52 heads: 4 feature variants of a width-128 network x 13 learning rates,
  60,000 vectors, 30 epochs): bf16 matmuls vs the same grid in fp32.

    python benchmarks/eval.py [--train 100000 --test 10000 --dim 384]

Writes benchmarks/results/eval.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from dinoflow.eval.features import extract_features
from dinoflow.eval.knn import centred_byte_cosine_blocks, cosine_blocks, knn_classify_multi_k, knn_votes
from dinoflow.eval.linear_probe import train_linear_probes
from dinoflow.models.backbone import build_backbone

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality_common import machine  # noqa: E402

BACKBONES = {
    "demo_vit_32px": ({"embed_dim": 192, "depth": 6, "num_heads": 3, "patch_size": 4}, 32),
    "vit_s16_224px": ({"embed_dim": 384, "depth": 12, "num_heads": 6, "patch_size": 16}, 224),
}


def dino_reference_knn(train, train_labels, test, k, temperature, num_classes) -> torch.Tensor:
    """DINO's ``knn_classifier`` (facebookresearch/dino eval_knn.py), returning the predictions."""
    train_t = F.normalize(train, dim=1).t()
    test = F.normalize(test, dim=1)
    predictions, chunk = [], 100
    retrieval_one_hot = torch.zeros(k, num_classes)
    for idx in range(0, test.shape[0], chunk):
        features = test[idx : idx + chunk]
        batch_size = features.shape[0]
        similarity = torch.mm(features, train_t)
        distances, indices = similarity.topk(k, largest=True, sorted=True)
        candidates = train_labels.view(1, -1).expand(batch_size, -1)
        retrieved_neighbors = torch.gather(candidates, 1, indices)
        retrieval_one_hot.resize_(batch_size * k, num_classes).zero_()
        retrieval_one_hot.scatter_(1, retrieved_neighbors.view(-1, 1), 1)
        distances_transform = distances.clone().div_(temperature).exp_()
        probs = torch.sum(
            torch.mul(retrieval_one_hot.view(batch_size, -1, num_classes), distances_transform.view(batch_size, -1, 1)),
            1,
        )
        predictions.append(probs.argmax(1))
    return torch.cat(predictions)


def time_features(name: str, images: int, batch: int) -> dict:
    overrides, size = BACKBONES[name]
    backbone, _ = build_backbone("vit_small_patch16_224", img_size=size, fused_attn=True, **overrides)
    backbone.eval()
    batches = [torch.rand(batch, 3, size, size) for _ in range(images // batch)]
    extract_features(backbone, batches[:1])  # warm-up
    start = time.perf_counter()
    extract_features(backbone, batches)
    ours = images / (time.perf_counter() - start)
    start = time.perf_counter()
    with torch.no_grad():
        for x in batches:
            backbone(x)
    reference = images / (time.perf_counter() - start)
    return {"images_per_s": ours, "reference_fp32_forward_images_per_s": reference, "ratio": ours / reference}


def time_knn(train_n: int, test_n: int, dim: int, classes: int = 1000) -> dict:
    generator = torch.Generator().manual_seed(0)
    train, test = torch.randn(train_n, dim, generator=generator), torch.randn(test_n, dim, generator=generator)
    labels = torch.randint(0, classes, (train_n,), generator=generator)
    start = time.perf_counter()
    scores = knn_classify_multi_k(train, labels, test, classes, (10, 20, 100, 200), 0.07)
    ours = time.perf_counter() - start
    start = time.perf_counter()
    reference = dino_reference_knn(train, labels, test, 20, 0.07, classes)
    reference_s = time.perf_counter() - start
    agree = float((scores[20].argmax(1) == reference).float().mean())
    return {"seconds_4_ks": ours, "reference_dino_seconds_k20": reference_s, "ratio_reference_over_ours": reference_s / ours,
            "k20_predictions_agree": agree}  # fmt: skip


def time_raw_pixel_knn(train_n: int = 60_000, test_n: int = 10_000, pixels: int = 3 * 32 * 32) -> dict:
    """Random bytes with a shared black background, like Fashion-MNIST's, 10 classes."""
    generator = torch.Generator().manual_seed(1)
    train, test = (
        torch.randint(0, 256, (n, pixels), dtype=torch.uint8, generator=generator) for n in (train_n, test_n)
    )
    train[:, : pixels // 2], test[:, : pixels // 2] = 0, 0
    labels = torch.randint(0, 10, (train_n,), generator=generator)
    start = time.perf_counter()
    ours = knn_votes(centred_byte_cosine_blocks(train, test), labels, 10, (10, 20, 100, 200))
    ours_s = time.perf_counter() - start
    start = time.perf_counter()
    centred = (x.float() - x.float().mean(1, keepdim=True) for x in (train, test))
    reference = knn_votes(cosine_blocks(*centred), labels, 10, (10, 20, 100, 200))
    reference_s = time.perf_counter() - start
    agree = float((ours[20].argmax(1) == reference[20].argmax(1)).float().mean())
    return {"train": train_n, "test": test_n, "pixels": pixels, "seconds_int8": ours_s, "reference_fp32_seconds": reference_s,
            "ratio_reference_over_ours": reference_s / ours_s, "k20_predictions_agree": agree}  # fmt: skip


def time_linear_grid(n: int = 60_000, width: int = 128, epochs: int = 30) -> dict:
    """Overlapping Gaussian classes in the probe inputs' shape of a width-128, 4-block network."""
    generator = torch.Generator().manual_seed(2)
    labels = torch.randint(0, 10, (n + n // 6,), generator=generator)
    centres = torch.randn(10, 5 * width, generator=generator) * 0.04  # overlapping classes: top-1 well below 1
    features = centres[labels] + torch.randn(len(labels), 5 * width, generator=generator)
    columns = {"cls1": slice(3 * width, 4 * width), "cls1+avgpool": slice(3 * width, 5 * width),
               "cls4": slice(0, 4 * width), "cls4+avgpool": slice(0, 5 * width)}  # fmt: skip
    runs = {}
    for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        start = time.perf_counter()
        accuracy = train_linear_probes(features[:n], labels[:n], features[n:], labels[n:], 10, columns, epochs,
                                       matmul_dtype=dtype)  # fmt: skip
        runs[name] = (time.perf_counter() - start, max(accuracy.values()))
    return {"n": n, "heads": 52, "epochs": epochs, "seconds_bf16": runs["bf16"][0], "reference_fp32_seconds": runs["fp32"][0],
            "ratio_reference_over_ours": runs["fp32"][0] / runs["bf16"][0], "best_top1_bf16": runs["bf16"][1],
            "best_top1_fp32": runs["fp32"][1]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=100_000)
    parser.add_argument("--test", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "eval.json")
    args = parser.parse_args()
    features = {"demo_vit_32px": time_features("demo_vit_32px", 1024, 256),
                "vit_s16_224px": time_features("vit_s16_224px", 64, 32)}  # fmt: skip
    for name, f in features.items():
        print(
            f"features {name}: {f['images_per_s']:.1f} images/s (fp32 forward {f['reference_fp32_forward_images_per_s']:.1f})"
        )
    knn = time_knn(args.train, args.test, args.dim)
    print(f"k-NN {args.train}x{args.test}x{args.dim}: {knn['seconds_4_ks']:.1f} s for 4 k "
          f"(DINO reference, k=20 only: {knn['reference_dino_seconds_k20']:.1f} s)")  # fmt: skip
    raw = time_raw_pixel_knn()
    print(f"raw-pixel k-NN {raw['train']}x{raw['test']}x{raw['pixels']} bytes: {raw['seconds_int8']:.1f} s "
          f"(fp32: {raw['reference_fp32_seconds']:.1f} s; k=20 predictions agree {raw['k20_predictions_agree']:.4f})")  # fmt: skip
    grid = time_linear_grid()
    print(f"linear grid, {grid['heads']} heads, {grid['n']} x {grid['epochs']} epochs: {grid['seconds_bf16']:.1f} s bf16 "
          f"(fp32: {grid['reference_fp32_seconds']:.1f} s; best top-1 {grid['best_top1_bf16']:.4f} vs "
          f"{grid['best_top1_fp32']:.4f})")  # fmt: skip
    report = {
        "benchmark": "eval",
        "machine": machine(),
        "features": features,
        "knn": {"train": args.train, "test": args.test, "dim": args.dim, **knn},
        "raw_pixel_knn": raw,
        "linear_grid": grid,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
