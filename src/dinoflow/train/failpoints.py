"""Failpoints: faults that a test or a chaos drill injects into a real training process, named in
``DINOFLOW_FAILPOINTS`` as ``name@iteration`` pairs (comma-separated), e.g. ``nan_loss@7``.

Unset, as in every normal run, a check is one dictionary lookup.
"""

from __future__ import annotations

import os


def _parse(spec: str) -> dict[str, set[int]]:
    armed: dict[str, set[int]] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, iteration = item.partition("@")
        armed.setdefault(name, set()).add(int(iteration))
    return armed


_ARMED = _parse(os.environ.get("DINOFLOW_FAILPOINTS", ""))


def armed(name: str, iteration: int) -> bool:
    """Whether the fault ``name`` is to happen at ``iteration`` (0-based) in this process."""
    return iteration in _ARMED.get(name, ())
