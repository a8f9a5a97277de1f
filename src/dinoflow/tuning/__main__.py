"""A tuning worker: ``python -m dinoflow.tuning --base base.yaml --params tune.json --dataset DIR
--worker I --trials N --knn-k K --knn-temperature T``. Several workers (processes or pods) may share one study through its RDB
storage; each logs its trials under the MLflow run named by ``MLFLOW_RUN_ID``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import yaml

from dinoflow.config.pipeline_params import TuneParams
from dinoflow.tuning.study import run_worker


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dinoflow.tuning", description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, required=True, help="resolved pretrain config (YAML)")
    parser.add_argument("--params", type=Path, required=True, help="the tune parameters (JSON)")
    parser.add_argument("--dataset", type=Path, required=True, help="dataset directory (index.json + shards)")
    parser.add_argument("--worker", type=int, default=0)
    parser.add_argument("--trials", type=int, required=True)
    parser.add_argument("--knn-k", type=int, required=True, help="k of the online k-NN (evaluate.knn_k)")
    parser.add_argument("--knn-temperature", type=float, required=True, help="its T (evaluate.knn_temperature)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=os.environ.get("DINOFLOW_LOG_FORMAT", "%(asctime)s %(message)s"))
    params = TuneParams.model_validate_json(args.params.read_text())
    parent = os.environ.get("MLFLOW_RUN_ID", "")
    if not parent:
        print("error: MLFLOW_RUN_ID must name the tuning run the trials nest under", file=sys.stderr)  # noqa: T201
        return 2
    run_worker(yaml.safe_load(args.base.read_text()), params, args.dataset, parent, args.worker, args.trials,
               args.knn_k, args.knn_temperature)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
