"""Setting-dependent default parameters found by grid search, shipped as ``resources/tuned/<file>.json``.

Each file maps a method name to a list of settings ``{"sampling_fraction": f, "sigma": s, "params": {...}}`` (plus
descriptive keys such as ``spokes``); the entry nearest the problem's setting (in log sampling fraction and log
sigma) supplies the method's defaults. Explicit user parameters always win. ``generative.json`` is written by
``benchmarks/bench_generative.py --tune --write-tuned``; ``pnp.json`` by the PnP grid search (see
``resources/weights/LEARNED.md``).
"""

from __future__ import annotations

import functools
import json
import math
from typing import Any

from pathlib import Path

from ..paths import RESOURCES_DIR
from ..weight_sets import WeightSet, tuned_file
from .base import Problem

TUNED_DIR = RESOURCES_DIR / "tuned"


@functools.lru_cache(maxsize=16)
def _read_table(path: Path, mtime_ns: int) -> dict[str, list[dict[str, Any]]]:
    return json.loads(path.read_text())


def tuned_table(file_name: str, weight_set: WeightSet | None = None) -> dict[str, list[dict[str, Any]]]:
    """The whole table ``<file_name>`` of the weight set's (default: the active one's) ``tuned/`` folder, else of
    ``resources/tuned`` (empty when neither exists)."""
    path = tuned_file(file_name, weight_set)
    if not path.exists():
        return {}
    return _read_table(path, path.stat().st_mtime_ns)


def nearest_setting(entries: list[dict[str, Any]], fraction: float, sigma: float) -> dict[str, Any] | None:
    """The entry closest to ``(fraction, sigma)`` in log-log distance."""
    def distance(entry: dict[str, Any]) -> float:
        return math.hypot(
            math.log(max(entry["sampling_fraction"], 1e-6) / max(fraction, 1e-6)),
            math.log(max(entry["sigma"], 1e-6) / max(sigma, 1e-6)),
        )

    return min(entries, key=distance) if entries else None


def tuned_defaults(file_name: str, method: str, problem: Problem) -> dict[str, Any]:
    """``method``'s tuned parameters for the setting nearest ``problem``'s (empty when none is tuned)."""
    entries = tuned_table(file_name, problem.weight_set).get(method, [])
    entry = nearest_setting(entries, problem.operator.sampling_fraction, problem.sigma)
    return dict(entry["params"]) if entry else {}
