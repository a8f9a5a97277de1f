"""Batch embedding and search at scale (the ``embed`` pipeline and ``python -m dinoflow.search``).

1. Embedding throughput (images/s): generated 64 px images through the demo preset's ViT (random
   init: the weights do not change the cost) with the evaluation preprocessing at 32 px, as the
   pipeline does it (``registry.image_model.ImageEmbedder`` on files, fp32, rows flushed to
   Parquet in chunks: ``curation.embedding_store``), and the forward pass alone on ready views.
2. Index build and query time vs N (default 10k, 100k, 1M random unit vectors of 128 dims, the
   demo's embedding width), exact ``IndexFlatIP`` and IVF (``curation.search_index``), each N in
   its own process (peak memory per N; at 1M about 2.5 GB by count: 0.5 GB of vectors, their unit
   copy and the index's copy, on top of the imports): build seconds, one query at a
   time (median ms), 1,000 queries in one call (queries/s), and for queries that are noisy copies
   of stored vectors, how often the copied vector comes first and the IVF index's recall@10
   against the exact one. Random vectors have no clusters: the IVF recall is a worst case.

    python benchmarks/embed.py [--sizes 10000 100000 1000000] [--images 1024] [--out ...]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from dinoflow.config import resolve_config
from dinoflow.curation.embedding_store import update_embeddings
from dinoflow.curation.search_index import build_search_index, index_kind, nearest
from dinoflow.data.multicrop import normalize
from dinoflow.data.synthetic import SyntheticSpec, generate
from dinoflow.eval.features import ImagePreprocessing, image_view
from dinoflow.registry.image_model import ImageEmbedder
from dinoflow.train.builders import build_backbone_from_config

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality_common import PARAMS, RESULTS, in_own_process, machine  # noqa: E402

DIM, QUERIES, BATCH_QUERIES, K = 128, 100, 1000, 10


def embedding_throughput(images: int, batch_size: int = 64) -> dict:
    """Images/s of the pipeline's embedding path and of the forward pass alone (demo ViT)."""
    demo = resolve_config({"preset": "demo"}, yaml.safe_load(PARAMS.read_text())["pretrain_presets"])
    size = demo.crops.global_size
    embedder = ImageEmbedder(build_backbone_from_config(demo, drop_path=False), ImagePreprocessing(size, 64))
    with tempfile.TemporaryDirectory() as tmp:
        per_class = max(1, images // 10)
        generate(SyntheticSpec(num_classes=10, train_per_class=per_class, val_per_class=1, image_size=64, seed=0),
                 Path(tmp) / "images")  # fmt: skip
        files = sorted(Path(tmp, "images").glob("images/train/**/*.png"))[:images]
        paths = [f.relative_to(tmp).as_posix() for f in files]  # unique: also the content key here

        def embed(batch: list[Path]) -> np.ndarray:
            return embedder.predict(pd.DataFrame({"path": [str(f) for f in batch]}))

        embed(files[:batch_size])  # warm-up: first-call allocations
        started = time.perf_counter()
        update_embeddings(Path(tmp) / "out", files, paths, paths, "bench", embed, embedder.backbone.num_features,
                          batch_size, flush_every=4)  # fmt: skip
        pipeline_s = time.perf_counter() - started
        views = torch.stack([image_view(f, embedder.preprocessing) for f in files[:batch_size]])
    with torch.inference_mode():
        embedder.backbone(normalize(views))
        started, rounds = time.perf_counter(), max(1, len(files) // batch_size)
        for _ in range(rounds):
            embedder.backbone(normalize(views))
        forward_s = time.perf_counter() - started
    return {
        "images": len(files), "batch_size": batch_size, "image_side_px": 64, "view_px": size,
        "embed_dim": int(embedder.backbone.num_features),
        "pipeline_images_per_s": round(len(files) / pipeline_s, 1),
        "forward_only_images_per_s": round(rounds * batch_size / forward_s, 1),
    }  # fmt: skip


def index_point(n: int, seed: int = 0) -> dict:
    """Build and query both index kinds on n random unit vectors (run in its own process)."""
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, DIM), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    copied = rng.choice(n, size=QUERIES, replace=False)
    queries = vectors[copied] + rng.standard_normal((QUERIES, DIM), dtype=np.float32) * (0.2 / np.sqrt(DIM))
    batch = vectors[rng.choice(n, size=BATCH_QUERIES)]
    point: dict = {"n": n, "dim": DIM, "auto_picks": index_kind(n, DIM), "vectors_gb": round(vectors.nbytes / 2**30, 3)}
    truth = None
    for kind in ("exact", "ivf"):
        started = time.perf_counter()
        index, _ = build_search_index(vectors, kind)
        build_s = time.perf_counter() - started
        single = []
        for q in queries:
            started = time.perf_counter()
            nearest(index, q[None], K)
            single.append(time.perf_counter() - started)
        started = time.perf_counter()
        nearest(index, batch, K)
        batch_s = time.perf_counter() - started
        _, rows = nearest(index, queries, K)
        truth = rows if truth is None else truth
        point[kind] = {
            "build_s": round(build_s, 3), "query_ms_median": round(1000 * float(np.median(single)), 3),
            "batch_queries_per_s": round(BATCH_QUERIES / batch_s, 1),
            "copied_vector_first": float(np.mean(rows[:, 0] == copied)),
            "recall_at_10_vs_exact": float(np.mean([len(set(a) & set(b)) / K for a, b in zip(rows, truth, strict=True)])),
        }  # fmt: skip
        del index
    point["peak_memory_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
    return point


def index_scaling(sizes: list[int]) -> list[dict]:
    points = []
    for n in sizes:
        p = in_own_process(__file__, "--index-one", n)
        points.append(p)
        if "failed" in p:
            continue
        for kind in ("exact", "ivf"):
            k = p[kind]
            print(f"N = {n:,} {kind:5s}: build {k['build_s']} s, query {k['query_ms_median']} ms, "
                  f"{k['batch_queries_per_s']} queries/s batched, copy first {k['copied_vector_first']:.2f}, "
                  f"recall@10 {k['recall_at_10_vs_exact']:.2f}")  # fmt: skip
        print(f"N = {n:,}: auto picks {p['auto_picks']}, peak memory {p['peak_memory_gb']} GB")
    return points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--images", type=int, default=1024, help="generated images embedded for the throughput")
    parser.add_argument("--index-one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=RESULTS / "embed.json")
    args = parser.parse_args()
    if args.index_one:
        print(json.dumps(index_point(args.index_one)))
        return
    report = {"machine": machine(), "embedding": embedding_throughput(args.images)}
    e = report["embedding"]
    print(f"embedding ({e['images']} images, demo ViT, {e['view_px']} px views): {e['pipeline_images_per_s']} images/s "
          f"through the pipeline's path, {e['forward_only_images_per_s']} images/s forward only")  # fmt: skip
    report["index"] = index_scaling(args.sizes)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
