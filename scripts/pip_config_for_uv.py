"""Print shell `export` lines that give uv the package sources pip is configured with.

`make install` installs with uv (about three times faster than pip here), but uv reads neither
pip.conf nor PIP_* variables: a machine whose pip points at a mirror, a local wheel folder or a
constraints file would silently install something else. This hands those settings over, and has
uv merge the indexes as pip does (best version across all of them).

    eval "$(.venv/bin/python scripts/pip_config_for_uv.py requirements.lock)"

Constraint files named as arguments join pip's own: uv takes a list either from its variable or
from the command line, not from both.
"""

from __future__ import annotations

import ast
import shlex
import subprocess
import sys

# pip option → (uv variable, separator uv expects between several values)
OPTIONS = {
    "index-url": ("UV_INDEX_URL", " "),
    "extra-index-url": ("UV_EXTRA_INDEX_URL", " "),
    "find-links": ("UV_FIND_LINKS", ","),
    "constraint": ("UV_CONSTRAINT", " "),
    "cert": ("SSL_CERT_FILE", " "),
}


def pip_settings() -> dict[str, list[str]]:
    """``pip config list`` (files and PIP_* variables) as option → values, last source wins."""
    listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=True)
    settings: dict[str, list[str]] = {}
    for line in listed.stdout.splitlines():
        key, _, value = line.partition("=")
        option = key.rsplit(".", 1)[-1]
        if option in OPTIONS and value:
            settings[option] = ast.literal_eval(value).split()
    return settings


def main() -> None:
    print("export UV_INDEX_STRATEGY=unsafe-best-match")  # pip's behaviour: all indexes, best match
    settings = pip_settings()
    settings["constraint"] = settings.get("constraint", []) + sys.argv[1:]
    for option, values in settings.items():
        variable, separator = OPTIONS[option]
        if values:
            print(f"export {variable}={shlex.quote(separator.join(values))}")


if __name__ == "__main__":
    main()
