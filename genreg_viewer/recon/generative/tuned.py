"""Setting-dependent default parameters found by grid search (``benchmarks/bench_generative.py --tune --write-tuned``).

``resources/tuned/generative.json`` maps a method name to a list of settings
``{"sampling_fraction": f, "sigma": s, "params": {...}}``; the entry nearest the problem's setting (in
log sampling fraction and log sigma) supplies the defaults. Explicit user parameters always win.
"""

from __future__ import annotations

import functools
import json
import math
from typing import Any

from ...paths import RESOURCES_DIR
from ..base import Problem

TUNED_FILE = RESOURCES_DIR / "tuned" / "generative.json"


@functools.lru_cache(maxsize=1)
def _table() -> dict[str, list[dict[str, Any]]]:
    if not TUNED_FILE.exists():
        return {}
    return json.loads(TUNED_FILE.read_text())


def nearest_setting(entries: list[dict[str, Any]], fraction: float, sigma: float) -> dict[str, Any] | None:
    """The entry closest to ``(fraction, sigma)`` in log-log distance."""
    def distance(entry: dict[str, Any]) -> float:
        return math.hypot(
            math.log(max(entry["sampling_fraction"], 1e-6) / max(fraction, 1e-6)),
            math.log(max(entry["sigma"], 1e-6) / max(sigma, 1e-6)),
        )

    return min(entries, key=distance) if entries else None


def tuned_defaults(method: str, problem: Problem) -> dict[str, Any]:
    entry = nearest_setting(_table().get(method, []), problem.operator.sampling_fraction, problem.sigma)
    return dict(entry["params"]) if entry else {}
