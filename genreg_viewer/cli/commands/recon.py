"""``genreg recon IMAGE --mask SPEC --noise SIGMA --method NAME``: reconstruct one slice with any method.

Simulates ``y = M F x + n`` from the ground-truth IMAGE (or reads measured data with ``--kspace``), runs the method
with a progress bar on stderr, and prints a summary (``--json``: one JSON object with method, psnr, ssim, seconds,
iterations, device, params, mask, mask_fraction, sigma, seed and ``weights``: the weight set, why it was chosen
and ``networks``, ``{network: the set that supplied it}`` for every trained network the run used, resolved through
the set's fallback chain as the methods resolve them, see :func:`genreg_viewer.weight_sets.record_networks`).
``--tune`` first grid-searches the method's main parameter for the best PSNR. ``--out`` writes a results bundle
(``.npz`` or ``.h5``; see :func:`save_result_bundle`), the format the app exports and opens, ``--png`` the image.

Methods with a posterior std map (mean+covar, mean+diagonal, latent-vi) also report ``std_map`` (its RMS and
maximum, and the map itself in ``--out``) and ``std_calibration``: the stored std scale factor of the weight set
that applies to this run (:func:`genreg_viewer.evaluation.calibration.std_scale_for_run`). The map is the raw one
unless ``--calibrated-std`` multiplies it by that factor (``std_scale`` says which was written).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...application import ImageInfo, RunRecord
from ...application.bundles import write_bundle
from ...application.session_schema import build_bundle
from ...application.sessions import check_results_path
from ...device import check_thread_count, configure_threads
from ...fileio import check_writable
from ...recon import ParameterError, ReconResult, check_finite_result, get_method, run_method
from ...render import save_grey_png
from ...tuning import tune_parameter
from ...weight_sets import record_networks
from ..common import (
    ProblemSetup,
    add_problem_arguments,
    add_weights_argument,
    apply_weights_argument,
    build_problem,
    parse_param_pairs,
)

#: progress reports (each with PSNR/SSIM) per run, at most
PROGRESS_REPORTS = 20


def register(subparsers) -> None:
    p = subparsers.add_parser("recon", help="reconstruct an image from simulated or measured k-space")
    add_problem_arguments(p)
    p.add_argument("--method", default="tv", help="reconstruction method (see 'genreg methods'; default tv)")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="method parameter, repeatable (e.g. --param alpha=0.01)")
    add_weights_argument(p)
    p.add_argument("--iters", type=int, default=None, help="iterations (default: the method's)")
    p.add_argument("--tune", action="store_true",
                   help="grid-search the method's main parameter for the best PSNR (needs a ground truth) first")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default: from the problem size and the machine's load; "
                        "GENREG_THREADS sets it too)")
    p.add_argument("--out", default=None,
                   help="write the run as a results bundle (.npz or .h5; the app opens it like a session): "
                        "image, ground truth, adjoint, mask, std map, params, metrics, history")
    p.add_argument("--png", default=None, help="write the reconstruction as an 8-bit PNG (values clipped to [0, 1])")
    p.add_argument("--json", action="store_true", help="print one JSON object (no progress bar)")
    p.add_argument("--calibrated-std", action="store_true",
                   help="multiply the posterior std map (mean+covar, mean+diagonal, latent-vi) by the weight set's "
                        "stored scale factor (genreg calibrate --write); default: the raw map")
    p.set_defaults(func=run)


def _method(name: str):
    try:
        return get_method(name)
    except KeyError as exc:
        raise ParameterError(exc.args[0]) from None


def _tune(method, setup: ProblemSetup, overrides: dict, iterations: int | None, quiet: bool) -> dict[str, Any]:
    """Grid-search the method's main parameter (:func:`genreg_viewer.tuning.tune_parameter`): the best value and
    the table."""
    if setup.problem.ground_truth is None:
        raise ValueError("--tune needs a ground truth: give an IMAGE")
    if method.tune_parameter is None:
        raise ParameterError(f"method {method.name!r} has no main parameter to tune")
    if not quiet:
        print(f"tuning {method.name}.{method.tune_parameter} over {list(method.tune_grid)} ...", file=sys.stderr)
    best, table = tune_parameter(method, setup.problem, params=overrides, iterations=iterations)
    return {"parameter": method.tune_parameter, "best": best,
            "table": [{"value": value, "psnr": psnr} for value, psnr in table]}


def _run_with_progress(
    method, setup: ProblemSetup, overrides: dict, iterations: int | None, quiet: bool
) -> ReconResult:
    total = iterations if iterations is not None else method.default_iterations
    report_every = max(1, total // PROGRESS_REPORTS)
    if quiet:
        return run_method(method, setup.problem, overrides, iterations, report_every=report_every)
    from tqdm import tqdm

    samples = method.resolve_params(overrides).get("posterior_samples", 0)
    # the posterior std map is drawn inside the last iteration: say so, or the bar seems stuck at its end
    desc = f"{method.name} (last step: std map, {samples} samples)" if samples else method.name
    with tqdm(total=total, desc=desc, unit="it", file=sys.stderr) as bar:
        def show(state) -> None:
            if state.psnr is not None:
                bar.set_postfix(psnr=f"{state.psnr:.2f}", refresh=False)
            if state.final:  # the bar ends here (early convergence included); closing it prints the one 100 % line
                bar.total = bar.n = state.iteration
                return
            bar.update(state.iteration - bar.n)

        return run_method(method, setup.problem, overrides, iterations, callback=show, report_every=report_every)


def save_result_bundle(path: str, result: ReconResult, setup: ProblemSetup, summary: dict[str, Any],
                       title: str) -> None:
    """Write the run as a results bundle, the format of the app's File > Export results and sessions
    (:mod:`genreg_viewer.application.bundles`; ``.npz`` or ``.h5``): ``ground_truth`` (with one),
    ``mask`` (centred, bool), ``adjoint``, ``run1__image`` and, for a method with one, ``run1__std_map`` (the
    posterior std times ``summary["std_scale"]``); the metadata holds the run (method, params, metrics, history)
    and ``summary``. The app opens it like a saved session (File > Open session)."""
    info = setup.info
    source = str(info.get("image") or info.get("kspace"))
    setting = {"mask": info["mask"], "fraction": info["mask_fraction"], "sigma": info["sigma"], "seed": info["seed"],
               "image": source, "weights": setup.problem.weight_set.name}
    record = RunRecord.from_result(result, 1, title, setting)  # its arrays hold the raw std map, if any
    if "std_map" in record.arrays:  # written times summary["std_scale"] (1: the raw map)
        scale = float(summary.get("std_scale", 1.0))
        record.arrays["std_map"] = (scale * record.arrays["std_map"]).astype(np.float32)
        record.info["std_scale"] = scale
    image_info = ImageInfo(source=source, slice_index=info.get("slice"), num_slices=int(info.get("num_slices", 1)),
                           path=source if Path(source).is_file() else None, key=info.get("key"))
    adjoint = setup.problem.zero_filled()[0, 0].detach().cpu().numpy()
    bundle = build_bundle("results", setup.ground_truth, np.asarray(setup.mask, dtype=bool), info["mask"],
                          float(info["sigma"]), info["seed"], image_info, [record], adjoint, {"summary": summary})
    write_bundle(path, bundle)


def _std_map(result: ReconResult) -> np.ndarray | None:
    """The first image's raw posterior std map ``(H, W)``, or None when the method reports none."""
    std = result.extras.std_map
    if std is None:
        return None
    array = std.detach().cpu().numpy() if isinstance(std, torch.Tensor) else np.asarray(std)
    return np.asarray(array, dtype=np.float64).reshape(-1, *array.shape[-2:])[0]


def _std_calibration(method, setup: ProblemSetup, overrides: dict, calibrated: bool):
    """The stored std scale factor for this run (None when the weight set stores none for the method); with
    ``--calibrated-std``, a clear error before any work when the method has no std map or there is no factor."""
    from ...evaluation.calibration import STD_MAP_METHODS, calibration_path, std_scale_for_run

    if method.name not in STD_MAP_METHODS:
        if calibrated:
            raise ParameterError(f"--calibrated-std: method {method.name!r} has no posterior std map; use one of "
                                 f"{', '.join(STD_MAP_METHODS)}")
        return None
    if calibrated and method.resolve_params(overrides).get("posterior_samples") == 0:
        raise ParameterError("--calibrated-std: posterior_samples=0 draws no std map; give posterior_samples >= 1")
    info, weight_set = setup.info, setup.problem.weight_set
    found = std_scale_for_run(method.name, info["mask"], info["sigma"], info["mask_fraction"], None, weight_set)
    if calibrated and found is None:
        raise ValueError(f"--calibrated-std: {calibration_path(weight_set)} has no std scale factor for "
                         f"{method.name}; fit one with genreg calibrate TEST --fit-on VAL --write")
    return found


def _std_summary(result: ReconResult, setup: ProblemSetup, calibrated: bool) -> dict[str, Any]:
    """``std_map`` (RMS and maximum of the map as written), ``std_scale`` and ``std_calibration`` for the summary
    (empty for a method without a std map)."""
    from ...evaluation.calibration import std_scale_for_run

    std = _std_map(result)
    if std is None:
        return {}
    info = setup.info
    found = std_scale_for_run(result.method, info["mask"], info["sigma"], info["mask_fraction"], result.params,
                              setup.problem.weight_set)
    scale = found.scale if calibrated and found is not None else 1.0
    calibration = {"applied": bool(calibrated and found is not None), **found.to_dict()} if found is not None else \
        {"applied": False, "scale": None, "description": f"no stored factor for {result.method} in the "
                                                         f"{setup.problem.weight_set.name} set"}
    shown = scale * std
    return {"std_map": {"rms": float(np.sqrt(np.mean(shown**2))), "max": float(shown.max()),
                        "calibrated": calibration["applied"]},
            "std_scale": scale, "std_calibration": calibration}


def _print_summary(summary: dict[str, Any]) -> None:
    tuning = summary.get("tuning")
    if tuning:
        for row in tuning["table"]:
            marker = "  <- best" if row["value"] == tuning["best"] else ""
            print(f"{tuning['parameter']} = {row['value']:<10g} PSNR {row['psnr']:6.2f} dB{marker}")
    quality = "no ground truth" if summary["psnr"] is None else (
        f"PSNR {summary['psnr']:.2f} dB, SSIM {summary['ssim']:.4f}")
    params = ", ".join(f"{k}={v}" for k, v in summary["params"].items())
    print(f"{summary['method']} ({params}): {quality}; {summary['iterations']} iterations in "
          f"{summary['seconds']:.3f} s on {summary['device']} [mask {summary['mask']} "
          f"{100 * summary['mask_fraction']:.1f}%, sigma {summary['sigma']}, seed {summary['seed']}]")
    if "std_map" in summary:
        std, calibration = summary["std_map"], summary["std_calibration"]
        what = f"calibrated, {calibration['description']}" if std["calibrated"] else (
            f"raw; --calibrated-std would apply {calibration['description']}" if calibration["scale"] is not None
            else f"raw; {calibration['description']}")
        print(f"posterior std: RMS {std['rms']:.4g}, max {std['max']:.4g} ({what})")
    for key in ("out", "png"):
        if summary.get(key):
            print(f"wrote {summary[key]}")


def run(args) -> int:
    if args.threads is not None:  # checked before any work (the count is applied once the problem is known)
        check_thread_count(args.threads)
    if args.iters is not None and args.iters < 1:
        raise ValueError(f"--iters must be at least 1, got {args.iters}")
    apply_weights_argument(args)
    method = _method(args.method)
    ok, why = method.available()
    if not ok:
        raise RuntimeError(f"method {method.name!r} is not available: {why}")
    overrides = parse_param_pairs(args.param)
    method.resolve_params(overrides)  # bad names or values fail here, before any work
    for option in ("--out", "--png"):  # an unwritable output is reported now, not after the reconstruction
        value = getattr(args, option[2:])
        if value is not None:
            check_writable(value, option)
    if args.out is not None:
        check_results_path(args.out)
    setup = build_problem(args)
    weight_set = setup.problem.weight_set  # --weights, or in auto mode the set trained for this image's kind
    _std_calibration(method, setup, overrides, args.calibrated_std)  # --calibrated-std: no map or no factor fails now
    configure_threads(args.threads, tuple(setup.problem.y.shape))

    with record_networks() as networks:  # {network: the set that supplied it}, as the methods resolve them
        tuning = _tune(method, setup, overrides, args.iters, args.json) if args.tune else None
        if tuning is not None:
            overrides = {**overrides, tuning["parameter"]: tuning["best"]}
        result = check_finite_result(_run_with_progress(method, setup, overrides, args.iters, args.json))
    if args.calibrated_std and _std_map(result) is None:
        raise ParameterError(f"--calibrated-std: this {method.name} run returned no std map (posterior_samples=0?)")

    summary = {**result.summary(), **setup.info, "out": args.out, "png": args.png,
               "weights": {"name": weight_set.name, "data": weight_set.data, "terms": weight_set.terms,
                           "chosen": setup.weights_reason, "networks": dict(sorted(networks.items()))},
               **_std_summary(result, setup, args.calibrated_std)}
    if summary.get("std_calibration", {}).get("applied"):
        summary["notes"] = {**summary["notes"], "std_scale": summary["std_scale"],
                            "std_scale_description": summary["std_calibration"]["description"]}
    if tuning is not None:
        summary["tuning"] = tuning
    if args.out:
        save_result_bundle(args.out, result, setup, summary, method.title)
    if args.png:
        save_grey_png(result.image_numpy(0), args.png)
    if args.json:
        print(json.dumps(summary))
    else:
        _print_summary(summary)
    return 0
