"""Data versioning with DVC: ``dvc add`` a raw data folder and read back its content hash."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import yaml

log = logging.getLogger(__name__)


def find_dvc_root(path: Path) -> Path | None:
    for candidate in [path, *path.parents]:
        if (candidate / ".dvc").is_dir():
            return candidate
    return None


def track(path: Path) -> dict[str, str | int]:
    """``dvc add`` ``path`` (a no-op when unchanged) and return ``{dvc_md5, dvc_nfiles, dvc_file}``.

    Returns an empty dict, with a warning, when ``path`` is not inside a DVC repository.
    """
    path = Path(path).resolve()
    root = find_dvc_root(path)
    if root is None:
        log.warning("%s is not inside a DVC repository (run `dvc init`): data version not recorded", path)
        return {}
    result = subprocess.run(
        [sys.executable, "-m", "dvc", "add", "--quiet", str(path.relative_to(root))],
        cwd=root,
        capture_output=True,
        text=True,
    )
    if result.returncode:
        raise RuntimeError(f"`dvc add {path}` failed:\n{result.stderr.strip()}")
    dvc_file = path.with_name(path.name + ".dvc")
    out = yaml.safe_load(dvc_file.read_text())["outs"][0]
    return {
        "dvc_md5": out["md5"],
        "dvc_nfiles": int(out.get("nfiles", 1)),
        "dvc_file": str(dvc_file.relative_to(root)),
    }
