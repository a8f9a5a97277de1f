"""Entry point of a pretraining process: ``python -m dinoflow.train`` (pure core, no Kedro).

Single process::

    python -m dinoflow.train --config conf/base/parameters_pretrain.yml \
        --dataset data/05_model_input/dataset --output data/06_models/pretrain \
        pretrain.preset=demo optim.epochs=2

Distributed (same arguments; gloo on CPU, NCCL on GPU)::

    torchrun --nproc-per-node 2 -m dinoflow.train --config resolved.yml --dataset ... --output ...

``--config`` takes the project's parameters file (``pretrain`` + ``pretrain_presets``) or a
resolved config written by a previous run. Trailing ``key=value`` pairs override it. The
process resumes from ``<output>/checkpoint.pt`` when it exists. On SIGTERM it finishes the current
step, writes a checkpoint and exits with code 143.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import torch

from dinoflow.atomic import atomic_path
from dinoflow.config import ConfigError, load_config_file, save_config
from dinoflow.train.distributed import init_distributed, shutdown_distributed
from dinoflow.train.loop import train
from dinoflow.train.preemption import EXIT_CODE, Preempted, PreemptionFlag
from dinoflow.train.sinks import FanOutSink, JsonlSink, load_plugin_sink


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m dinoflow.train", description="DINO pretraining process")
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--dataset", type=Path, required=True, help="dataset directory (index.json + shards)")
    parser.add_argument("--output", type=Path, required=True, help="checkpoint directory")
    parser.add_argument("--sink", action="append", default=[], help="extra metrics sink: mlflow or module:Class")
    parser.add_argument("overrides", nargs="*", help="dotted.key=value")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # A launcher that timestamps our lines itself sets DINOFLOW_LOG_FORMAT (e.g. "%(message)s").
    log_format = os.environ.get("DINOFLOW_LOG_FORMAT", "%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.basicConfig(level=logging.INFO, format=log_format)
    overrides = [o.removeprefix("pretrain.") for o in args.overrides]
    try:
        cfg = load_config_file(args.config, overrides)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)  # noqa: T201
        return 2
    if cfg.run.num_threads:
        torch.set_num_threads(cfg.run.num_threads)
    preemption = PreemptionFlag().install()  # before the process group: a SIGTERM during setup counts too
    env, device = init_distributed()
    sink = None
    try:
        if env.is_main:
            if overrides or args.config.resolve() != (args.output / "config.yaml").resolve():
                save_config(cfg, args.output / "config.yaml")  # the pretrain node wrote it there already
            sink = FanOutSink(
                [JsonlSink(args.output / "metrics.jsonl")] + [load_plugin_sink(s, args.output) for s in args.sink]
            )
        summary = train(cfg, args.dataset, args.output, sink, env, device, preemption)
        if env.is_main:  # whole or absent: its presence tells the pretrain node the run finished
            with atomic_path(args.output / "summary.json", "run summary") as tmp:
                tmp.write_text(json.dumps(summary, indent=2) + "\n")
    except Preempted as stopped:
        logging.getLogger("dinoflow.train").warning("%s", stopped)
        return EXIT_CODE
    except ConfigError as err:  # e.g. a warm-start source of another architecture: retrying cannot help
        print(f"error: {err}", file=sys.stderr)  # noqa: T201
        return 2
    finally:
        if sink is not None:
            sink.close()
        shutdown_distributed()
    return 0


if __name__ == "__main__":
    sys.exit(main())
