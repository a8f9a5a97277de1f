"""Registry commands: ``python -m dinoflow.registry rollback <model> [--to-version N]``.

Uses ``MLFLOW_TRACKING_URI`` (default: the project's ``sqlite:///mlflow.db``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import mlflow

from dinoflow.registry.mlflow_registry import rollback
from dinoflow.tracking.mlflow_run import tracking_uri


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dinoflow.registry", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    back = commands.add_parser("rollback", help="move @champion back to the previous champion (or --to-version)")
    back.add_argument("model")
    back.add_argument("--to-version")
    args = parser.parse_args(argv)
    mlflow.set_tracking_uri(tracking_uri(Path.cwd()))
    try:
        moved = rollback(args.model, args.to_version)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)  # noqa: T201
        return 2
    print(f"{moved['name']}@champion: v{moved['from']} -> v{moved['to']}")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
