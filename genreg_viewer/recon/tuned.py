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
import os
from typing import Any

from pathlib import Path

from ..validators import is_finite_number
from ..paths import RESOURCES_DIR
from ..weight_sets import WeightSet, tuned_file
from .base import Problem

TUNED_DIR = RESOURCES_DIR / "tuned"


#: bounds on a table of tuned parameters (a weight set's ``tuned/`` folder is untrusted)
MAX_TUNED_BYTES = 4 * 2**20
MAX_TUNED_ENTRIES = 1024
MAX_PARAM_TEXT = 200


def _fail(path: Path, where: str, expected: str, value: Any) -> ValueError:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return ValueError(f"{path}: {where} must be {expected}, got {shown}")


def _check_table(table: Any, path: Path) -> dict[str, list[dict[str, Any]]]:
    """``table`` when it has the layout of the module docstring (one ``ValueError`` line naming the file and the
    field otherwise); the values of ``params`` are scalars here, checked against the method's declarations by
    :func:`tuned_defaults`."""
    from ..physics.noise import MAX_SIGMA

    if not isinstance(table, dict):
        raise _fail(path, "the table", "a JSON object of method -> settings", table)
    count = 0
    for method, entries in table.items():
        if not isinstance(entries, list):
            raise _fail(path, f"the settings of {method[:40]!r}", "a list", entries)
        count += len(entries)
        if count > MAX_TUNED_ENTRIES:
            raise ValueError(f"{path}: more than {MAX_TUNED_ENTRIES} settings")
        for index, entry in enumerate(entries):
            where = f"{method[:40]} setting {index}"
            if not isinstance(entry, dict):
                raise _fail(path, where, "a JSON object", entry)
            fraction, sigma, params = entry.get("sampling_fraction"), entry.get("sigma"), entry.get("params")
            if not is_finite_number(fraction) or not 0 < fraction <= 1:
                raise _fail(path, f"{where}: 'sampling_fraction'", "a number in (0, 1]", fraction)
            if not is_finite_number(sigma) or not 0 <= sigma <= MAX_SIGMA:
                raise _fail(path, f"{where}: 'sigma'", f"a number in [0, {MAX_SIGMA:g}]", sigma)
            if not isinstance(params, dict):
                raise _fail(path, f"{where}: 'params'", "a JSON object of parameter values", params)
            for name, value in params.items():
                if isinstance(value, str) and len(value) <= MAX_PARAM_TEXT or isinstance(value, bool) or (
                        isinstance(value, int) and abs(value) < 2**63) or is_finite_number(value):
                    continue
                raise _fail(path, f"{where}: params.{name[:40]}", "a finite number, text or true/false", value)
    return table


@functools.lru_cache(maxsize=16)
def _read_table(path: Path, mtime_ns: int) -> dict[str, list[dict[str, Any]]]:
    from ..fileio import check_regular_file

    try:
        check_regular_file(path, "table of tuned parameters")
        size = path.stat().st_size
        if size > MAX_TUNED_BYTES:
            raise ValueError(f"{size} bytes, more than the limit of {MAX_TUNED_BYTES}")
        table = json.loads(path.read_text(encoding="utf-8"))
    except RecursionError:
        raise ValueError(f"{path}: not a readable table of tuned parameters (it nests too deeply)") from None
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable table of tuned parameters ({exc})") from None
    return _check_table(table, path)


def tuned_table(file_name: str, weight_set: WeightSet | None = None) -> dict[str, list[dict[str, Any]]]:
    """The whole table ``<file_name>`` of the weight set's (default: the bundled default set's) ``tuned/`` folder,
    else of ``resources/tuned`` (empty when neither exists). A malformed table is a ``ValueError`` naming the file
    and the field."""
    path = tuned_file(file_name, weight_set)
    if not os.path.lexists(path):
        return {}
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:  # a dangling link: refused by the reader
        mtime = 0
    return _read_table(path, mtime)


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
    if not entry:
        return {}
    from .base import ParameterError
    from .registry import get_method

    try:
        declared = get_method(method)
    except KeyError:
        return dict(entry["params"])
    try:  # each value parsed and range-checked by the method's declaration, so the error names the file
        return {name: declared.parameter(name).parse(value) for name, value in entry["params"].items()}
    except ParameterError as exc:
        path = tuned_file(file_name, problem.weight_set)
        raise ParameterError(f"{path}: {method} setting at sigma {entry['sigma']:g}: {exc}") from None
