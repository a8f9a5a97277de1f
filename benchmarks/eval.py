"""Evaluation speed: feature extraction images/s and weighted k-NN time, each next to a reference
measured in the same run.

- features: ``extract_features`` (bf16 autocast, the 4 linear-probe variants + patch tokens in
  one pass) vs a plain fp32 ``backbone(x)`` forward (the CLS feature only), for the demo
  backbone at 32 px and a ViT-S/16 at 224 px;
- k-NN: ``knn_classify_multi_k`` (k in {10, 20, 100, 200} from one top-k) on 100k train x 10k
  test features of dimension 384 vs DINO's ``knn_classifier`` (``eval_knn.py``: chunks of 100
  test samples, one-hot votes), run for k = 20 only.

    python benchmarks/eval.py [--train 100000 --test 10000 --dim 384]

Writes benchmarks/results/eval.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from dinoflow.eval.features import extract_features
from dinoflow.eval.knn import knn_classify_multi_k
from dinoflow.models.backbone import build_backbone

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
    report = {
        "benchmark": "eval",
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "threads": torch.get_num_threads(),
        },
        "torch": torch.__version__,
        "features": features,
        "knn": {"train": args.train, "test": args.test, "dim": args.dim, **knn},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
