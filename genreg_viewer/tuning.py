"""Tuned defaults: reading a weight set's tables of grid-searched parameters, applying them to a run, and the
grid searches that write them.

**Tables.** A weight set's ``tuned/<file>.json`` (else the bundled ``resources/tuned/<file>.json``) maps a method
name to a list of settings ``{"sampling_fraction": f, "sigma": s, "params": {...}}`` (plus descriptive keys such as
``spokes`` and ``tuned_on``): ``classical.json`` (TV's alpha), ``generative.json`` (the joint methods' lambda, mu and
solver variant) and ``pnp.json`` (pnp-admm's denoiser level and rho); ``calibration.json`` (the std factors of
:mod:`genreg_viewer.evaluation.calibration`) shares the folder and the :func:`nearest_setting` rule.

**Applying.** The entry nearest the problem's setting (in log sampling fraction and log sigma) supplies a method's
defaults (:func:`tuned_defaults`, called from the methods' ``defaults_for``); explicit user parameters always win
(:func:`run_params`, what :func:`genreg_viewer.recon.iterate_progress` runs with).

**Writing.** ``genreg recon --tune`` searches one parameter (:func:`tune_parameter`); the benchmark scripts
(``benchmarks/bench_generative.py --tune --write-tuned`` for the phantom set, ``benchmarks/bench_real.py --tune
--write-tuned`` for a real-data set) search a log grid that grows until the optimum is interior
(:func:`interior_grid_search`) and merge the results into the tables (:func:`merge_tuned`, :func:`write_tuned`).

This module sits beside :mod:`genreg_viewer.weight_sets`: it imports the reconstruction package only inside
functions, because the methods themselves read their defaults through it.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

from .paths import RESOURCES_DIR
from .validators import is_finite_number
from .weight_sets import WeightSet, tuned_file

if TYPE_CHECKING:
    from .recon.base import Problem, ReconMethod

#: the bundled phantom set's tables (a folder weight set's own ``tuned/`` comes first, see :func:`tuned_table`)
TUNED_DIR = RESOURCES_DIR / "tuned"

#: the table of each tuned family (file name in a ``tuned/`` folder)
CLASSICAL_TABLE = "classical.json"
GENERATIVE_TABLE = "generative.json"
PNP_TABLE = "pnp.json"

#: the joint generative methods (their lambda and mu are tuned in :data:`GENERATIVE_TABLE`)
JOINT_METHODS = ("mean+identity", "mean+diagonal", "mean+covar")

#: which methods' tuned parameters each table holds (what :func:`write_tuned` writes)
TABLE_METHODS: dict[str, tuple[str, ...]] = {
    CLASSICAL_TABLE: ("tv",),
    GENERATIVE_TABLE: JOINT_METHODS,
    PNP_TABLE: ("pnp-admm",),
}

#: joint-solver variants the tuning scripts can try for mean+diagonal and mean+covar (``--variants``): a warm start
#: from the mean+identity solution, and that plus the marginal-likelihood precision penalty; a variant's non-default
#: parameters are stored with the tuned lambda and mu
VARIANTS: dict[str, dict[str, str]] = {
    "eq12": {},
    "warm": {"warm_start": "identity"},
    "warm+marginal": {"warm_start": "identity", "precision_penalty": "marginal"},
    "marginal": {"precision_penalty": "marginal"},
    "expected": {"precision_penalty": "expected"},
}

#: bounds on a table of tuned parameters (a weight set's ``tuned/`` folder is untrusted)
MAX_TUNED_BYTES = 4 * 2**20
MAX_TUNED_ENTRIES = 1024
MAX_PARAM_TEXT = 200


# ---------------------------------------------------------------------------------------------------------- reading
def _fail(path: Path, where: str, expected: str, value: Any) -> ValueError:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return ValueError(f"{path}: {where} must be {expected}, got {shown}")


def _check_table(table: Any, path: Path) -> dict[str, list[dict[str, Any]]]:
    """``table`` when it has the layout of the module docstring (one ``ValueError`` line naming the file and the
    field otherwise); the values of ``params`` are scalars here, checked against the method's declarations by
    :func:`tuned_defaults`."""
    from .physics.noise import MAX_SIGMA

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
    from .fileio import check_regular_file

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


# --------------------------------------------------------------------------------------------------------- applying
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
    from .recon.base import ParameterError
    from .recon.registry import get_method

    try:
        declared = get_method(method)
    except KeyError:
        return dict(entry["params"])
    try:  # each value parsed and range-checked by the method's declaration, so the error names the file
        return {name: declared.parameter(name).parse(value) for name, value in entry["params"].items()}
    except ParameterError as exc:
        path = tuned_file(file_name, problem.weight_set)
        raise ParameterError(f"{path}: {method} setting at sigma {entry['sigma']:g}: {exc}") from None


def run_params(method: ReconMethod, problem: Problem, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The parameters a run of ``method`` on ``problem`` uses: the declared defaults, replaced by the method's
    setting-dependent (tuned) defaults, replaced by the explicit ``params``; all parsed and range-checked."""
    return method.resolve_params({**method.defaults_for(problem), **(params or {})})


# ---------------------------------------------------------------------------------------------------------- writing
def tune_parameter(
    method: ReconMethod | str,
    problem: Problem,
    parameter: str | None = None,
    grid: Sequence[float] | None = None,
    params: dict[str, Any] | None = None,
    iterations: int | None = None,
) -> tuple[Any, list[tuple[Any, float]]]:
    """Grid-search one parameter for the best mean PSNR against ``problem.ground_truth`` (as the paper did).

    Returns the best value and the ``(value, psnr)`` table.
    """
    import numpy as np

    from .recon.registry import get_method
    from .recon.runner import run_method

    if isinstance(method, str):
        method = get_method(method)
    if problem.ground_truth is None:
        raise ValueError("tuning needs a ground truth image")
    parameter = parameter or method.tune_parameter
    if parameter is None:
        raise ValueError(f"method {method.name!r} has no tunable main parameter")
    grid = list(grid if grid is not None else method.tune_grid)
    if not grid:
        raise ValueError(f"no tuning grid for {method.name}.{parameter}")
    table = []
    for value in grid:
        result = run_method(method, problem, {**(params or {}), parameter: value}, iterations)
        table.append((value, float(result.psnr) if result.psnr is not None else float("nan")))
    best = max(table, key=lambda row: -np.inf if np.isnan(row[1]) else row[1])[0]
    return best, table


def interior_grid_search(
    score: Callable[[dict[str, float]], float],
    grids: Mapping[str, Iterable[float]],
    bounds: Mapping[str, tuple[float, float]],
) -> tuple[dict[str, float], dict[tuple[float, ...], float], list[str]]:
    """Maximise ``score(params)`` over the product of the (log-spaced) ``grids``; while the best point lies on an
    edge of an axis, extend that axis by one more point at the same ratio (3 significant digits), inside ``bounds``.

    Returns ``(best, scores, edges)``: the best parameters, every scored point, and the names of the axes whose best
    value is still the first or last of its (grown) axis, i.e. stopped by ``bounds`` (empty when every optimum is
    interior). Single-value axes are fixed, never reported.
    """
    axes = {name: sorted(values) for name, values in grids.items()}
    scores: dict[tuple[float, ...], float] = {}
    while True:
        for point in itertools.product(*axes.values()):
            if point not in scores:
                scores[point] = score(dict(zip(axes, point)))
        best = max(scores, key=lambda point: scores[point])
        grew = False
        for i, name in enumerate(axes):
            values, value = axes[name], best[i]
            if len(values) < 2:
                continue
            low, high = bounds[name]
            below, above = values[0] / (values[1] / values[0]), values[-1] * (values[-1] / values[-2])
            if value == values[0] and below >= low:
                values.insert(0, float(f"{below:.3g}"))
                grew = True
            elif value == values[-1] and above <= high:
                values.append(float(f"{above:.3g}"))
                grew = True
        if not grew:
            break
    edges = [name for i, name in enumerate(axes) if len(axes[name]) > 1 and best[i] in (axes[name][0], axes[name][-1])]
    return dict(zip(axes, best)), scores, edges


#: tuned parameters of several radial settings: ``{(spokes, sigma): {method: params}}``
TunedSettings = Mapping[tuple[int, float], Mapping[str, Mapping[str, Any]]]


def merge_tuned(path: Path, tuned_all: TunedSettings, methods: Iterable[str],
                extra: Mapping[str, Any] | None = None) -> bool:
    """Merge ``{(spokes, sigma): {method: params}}`` for ``methods`` into the tuned-defaults table at ``path``
    (radial settings; entries of other settings are kept; ``extra`` keys are stored with each entry). The file is
    written (atomically) unless the merged table is empty; returns whether it was."""
    from .fileio import atomic_write_text
    from .physics import radial_mask

    methods = tuple(methods)
    table: dict[str, list] = json.loads(path.read_text()) if path.exists() else {}
    for (spokes, sigma), tuned in tuned_all.items():
        for method, params in tuned.items():
            if method not in methods:
                continue
            entries = [e for e in table.get(method, []) if (e["spokes"], e["sigma"]) != (spokes, sigma)]
            entries.append({"spokes": spokes, "sampling_fraction": float(radial_mask(spokes).mean()), "sigma": sigma,
                            "params": params, **(extra or {})})
            table[method] = sorted(entries, key=lambda e: (e["sigma"], e["spokes"]))
    if not table:
        return False
    atomic_write_text(path, json.dumps(table, indent=2) + "\n")
    return True


def write_tuned(folder: Path, tuned_all: TunedSettings, extra: Mapping[str, Any] | None = None,
                tables: Mapping[str, Iterable[str]] = TABLE_METHODS) -> list[Path]:
    """Merge the tuned parameters into each table of ``folder`` (a weight set's ``tuned/``; by default
    ``classical.json`` for tv, ``generative.json`` for the joint methods, ``pnp.json`` for pnp-admm), keeping the
    settings already there; returns the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    return [folder / name for name, methods in tables.items() if merge_tuned(folder / name, tuned_all, methods, extra)]


__all__ = [
    "CLASSICAL_TABLE",
    "GENERATIVE_TABLE",
    "JOINT_METHODS",
    "MAX_PARAM_TEXT",
    "MAX_TUNED_BYTES",
    "MAX_TUNED_ENTRIES",
    "PNP_TABLE",
    "TABLE_METHODS",
    "TUNED_DIR",
    "TunedSettings",
    "VARIANTS",
    "interior_grid_search",
    "merge_tuned",
    "nearest_setting",
    "run_params",
    "tune_parameter",
    "tuned_defaults",
    "tuned_table",
    "write_tuned",
]
