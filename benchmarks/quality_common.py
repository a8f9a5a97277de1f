"""What the quality benchmarks share: the machine description (with the GEMM peak measured now)
and scoring a frozen backbone with the evaluate node's protocol."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import torch
import yaml
from torch import nn

from dinoflow.data.shards import ShardReader
from dinoflow.eval.suite import EvalSet, EvalSettings, score_backbone

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_step import gemm_peak  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ROOT / "conf" / "base" / "parameters_pretrain.yml"
# The embedded demo data's generator settings (data.synthetic): light objects of random hues on darker grounds.
DEMO_DATA = yaml.safe_load((PARAMS.parent / "parameters_data_ingestion.yml").read_text())["data"]["synthetic"]
RESULTS = ROOT / "benchmarks" / "results"
CPU = torch.device("cpu")


def machine() -> dict:
    """CPU model, threads and the bf16/fp32 GEMM peaks measured in this run (TFLOP/s)."""
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
        flags = Path("/proc/cpuinfo").read_text()
        kind = "AMX" if "amx_bf16" in flags else ("AVX-512" if "avx512f" in flags else "other")
    except OSError:
        kind = "unknown"
    return {
        "cpu": name,
        "kind": kind,
        "threads": torch.get_num_threads(),
        "gemm_peak_tflops_bf16": round(gemm_peak(torch.bfloat16, CPU) / 1e12, 3),
        "gemm_peak_tflops_fp32": round(gemm_peak(torch.float32, CPU) / 1e12, 3),
        "torch": torch.__version__,
    }


def score_on(backbone: nn.Module, dataset: Path, settings: EvalSettings, linear: bool = False) -> dict:
    """k-NN top-1 (and the best linear probe) of ``backbone`` on the dataset's train/val splits."""
    index = json.loads((Path(dataset) / "index.json").read_text())
    data = EvalSet(
        ShardReader.from_index(dataset, "train"),
        ShardReader.from_index(dataset, "val"),
        num_classes=len(index["classes"]),
        image_size=settings.image_size,
        with_masks=False,
    )
    scores = score_backbone(backbone, data, settings, "supervised", linear=linear)
    return {"knn_top1": scores["knn"]["top1"], **({"linear_top1": scores["linear"]} if linear else {})}


def in_own_process(script: str, flag: str, n: int) -> dict:
    """``python script flag n`` in a fresh process, so the peak memory it reports is its own: the
    JSON of its last stdout line, or ``{"n", "failed"}`` with the end of its stderr."""
    run = subprocess.run([sys.executable, script, flag, str(n)], capture_output=True, text=True)
    if run.returncode:
        print(f"N = {n:,}: failed\n{run.stderr[-2000:]}")  # noqa: T201
        return {"n": n, "failed": run.stderr[-2000:]}
    return json.loads(run.stdout.strip().splitlines()[-1])


def write_report(out: Path, report: dict, summary: str) -> None:
    """The report as JSON at ``out``, and its table on stdout."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(summary)  # noqa: T201
    print(f"wrote {out}")  # noqa: T201
