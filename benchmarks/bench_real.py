"""Real-knee benchmark: every method on held-out real slices, paired against tuned TV.

    # tune TV's alpha and the generative lambda/mu on a real *validation* slice set, write them into the weight set
    python benchmarks/bench_real.py --tune --data VAL.h5 --weights real-knee --write-tuned
    # PnP-ADMM's denoiser_sigma/rho (tuned/pnp.json) for the set's own DnCNN
    python benchmarks/bench_real.py --tune --data VAL.h5 --weights real-knee --write-tuned --methods pnp-admm
    # evaluate the shipped defaults on a held-out *test* slice set
    python benchmarks/bench_real.py --data TEST.h5 --weights real-knee

Slice sets come from ``genreg dataset build`` (fastMRI ``.h5`` volumes, or ``--format mrnet``). The evaluation is
``genreg evaluate`` (:mod:`genreg_viewer.evaluation.evaluate`: per-image noise seeds, batches of ``--batch``, rows
in ``--out``, resumable; under ``torchrun`` one shard per process): for each setting (``--settings SPOKES:SIGMA ...``,
radial masks) the script prints, per method, mean ± std PSNR and SSIM over the images, the paired PSNR difference to
TV (mean ± standard error) and on how many images the method beats TV, as a markdown table, then one JSON line with
every number.

Tuning is a grid search for the best mean PSNR whose grids grow until every optimum is interior (or a bound is
reached; the report says where each optimum sits). Never tune on the test split.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common import make_problem, markdown_table, per_image_psnr_ssim, set_threads

from genreg_viewer.data.dataset import load_slice_set
from genreg_viewer.evaluation.evaluate import EvaluationConfig, run_evaluation
from genreg_viewer.recon import run_method
from genreg_viewer.tuning import JOINT_METHODS as JOINT
from genreg_viewer.tuning import VARIANTS, interior_grid_search
from genreg_viewer.tuning import write_tuned as write_tuned_tables
from genreg_viewer.weight_sets import active_weight_set, use_weight_set

DEFAULT_METHODS = ("adjoint", "tv") + JOINT
#: starting grids (log-spaced); they grow while the optimum sits on an edge, inside these bounds
TV_GRID = (0.005, 0.007, 0.01, 0.014, 0.02, 0.028, 0.04)
LAMBDA_GRID = (0.05, 0.1, 0.2, 0.4)
MU_GRID = (0.25, 1.0, 4.0)
#: pnp-admm (``--methods pnp-admm``): the denoiser level and the ADMM penalty (``resources/tuned/pnp.json`` format)
PNP_SIGMA_GRID = (0.02, 0.03, 0.045)
PNP_RHO_GRID = (0.5, 1.0, 2.0)
#: the denoiser_sigma bounds are the range pnp-admm accepts for the bundled DnCNN (trained on 0.005-0.15)
BOUNDS = {"alpha": (1e-4, 1.0), "lam": (1e-3, 100.0), "mu": (0.01, 1000.0), "denoiser_sigma": (0.0025, 0.225),
          "rho": (1e-3, 1000.0)}


def load_images(path: str, count: int | None) -> torch.Tensor:
    """``count`` images evenly spaced through the slice set (all when ``count`` is None)."""
    images = load_slice_set(path)
    if count is not None and count < len(images):
        images = images[np.linspace(0, len(images) - 1, count).round().astype(int)]
    return torch.from_numpy(images)[:, None]


def method_psnr(method: str, problem, params: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, float]:
    start = time.perf_counter()
    result = run_method(method, problem, params)
    seconds = time.perf_counter() - start
    psnr, ssim = per_image_psnr_ssim(result, problem)
    return psnr, ssim, seconds


def tune_setting(images: torch.Tensor, spokes: int, sigma: float, methods,
                 variants: tuple[str, ...] = ("eq12",), lambda_grid: tuple[float, ...] = LAMBDA_GRID,
                 mu_grid: tuple[float, ...] = MU_GRID) -> dict[str, dict]:
    """Grid-search TV's alpha, the joint methods' lambda/mu (mean+diagonal and mean+covar once per solver variant
    of :data:`genreg_viewer.tuning.VARIANTS`, keeping the best, whose non-default parameters are written too) and
    pnp-admm's denoiser_sigma/rho. A one-value ``mu_grid`` fixes mu."""
    problem = make_problem(images, f"radial:{spokes}", sigma, seed=1)
    tuned: dict[str, dict] = {}
    best_score: dict[str, float] = {}
    for method in methods:
        if method == "tv":
            grids, method_variants = {"alpha": TV_GRID}, ("eq12",)
        elif method in JOINT:
            grids = {"lam": lambda_grid, "mu": mu_grid}
            method_variants = ("eq12",) if method == "mean+identity" else variants
        elif method == "pnp-admm":
            grids, method_variants = {"denoiser_sigma": PNP_SIGMA_GRID, "rho": PNP_RHO_GRID}, ("eq12",)
        else:
            continue
        for variant in method_variants:
            extra = {"posterior_samples": 0, **VARIANTS[variant]} if method in JOINT else {}
            started = time.perf_counter()

            def score(params: dict[str, float], m: str = method, extra: dict = extra, v: str = variant) -> float:
                value = float(method_psnr(m, problem, {**params, **extra})[0].mean())
                print(f"    {m} {v} {params}: {value:.2f} dB", flush=True)
                return value

            best, scores, edges = interior_grid_search(score, grids, BOUNDS)
            where = {name: "edge (bound)" if name in edges else "interior" for name in grids}
            value = max(scores.values())
            print(f"  {method} {variant}: best {best} ({value:.2f} dB; {where}; {len(scores)} points, "
                  f"{time.perf_counter() - started:.0f} s)", flush=True)
            if value > best_score.get(method, -float("inf")):
                best_score[method] = value
                tuned[method] = {**best, **VARIANTS[variant]} if method in JOINT else best
    return tuned


def write_tuned(folder: Path, tuned_all: dict[tuple[int, float], dict[str, dict]], source: str) -> None:
    """Write ``classical.json`` (tv), ``generative.json`` (the joint methods) and ``pnp.json`` (pnp-admm) into
    ``folder`` (a weight set's ``tuned/``), merging with the settings already there
    (:func:`genreg_viewer.tuning.write_tuned`)."""
    for path in write_tuned_tables(folder, tuned_all, {"tuned_on": source}):
        print(f"wrote {path}")


def evaluate_setting(data: str, images: int | None, spokes: int, sigma: float, methods, out: Path, batch: int,
                     device: str, weights: str) -> dict[str, Any]:
    """One setting through ``genreg evaluate`` (:func:`genreg_viewer.evaluation.evaluate.run_evaluation`): rows go
    to ``out`` (resumable), the summary is printed as the table of docs/REAL_KNEES.md and returned as a record."""
    config = EvaluationConfig(data=data, methods=list(methods), out=out, mask=f"radial:{spokes}", sigma=sigma, seed=0,
                              images=images, batch=batch, device=device, weights=weights, reference="tv")
    run = run_evaluation(config, progress=False, log=lambda text: print(f"  {text}", flush=True))
    if run.summary is None:  # a rank other than 0 under torchrun
        return {}
    summary = run.summary
    rows, record = [], {"spokes": spokes, "sigma": sigma, "images": len({r["image"] for r in run.rows}),
                        "methods": {}}
    for method, entry in summary["methods"].items():
        record["methods"][method] = {
            "psnr_mean": entry["psnr_mean"], "psnr_std": entry["psnr_std"], "ssim_mean": entry["ssim_mean"],
            "ssim_std": entry["ssim_std"], "seconds_per_image": entry["seconds_per_image"],
            **({"diff_vs_tv": entry["diff_vs_reference"], "diff_se": entry["diff_se"],
                "wins_vs_tv": entry["wins_vs_reference"]} if "diff_vs_reference" in entry else {})}
        diff_text = wins_text = ""
        if "diff_vs_reference" in entry:
            diff_text = f"{entry['diff_vs_reference']:+.2f} ± {entry['diff_se']:.2f}"
            wins_text = f"{entry['wins_vs_reference']}/{entry['paired_images']}"
        rows.append([f"{spokes} spokes, sigma {sigma}", method, f"{entry['psnr_mean']:.2f} ± {entry['psnr_std']:.2f}",
                     f"{entry['ssim_mean']:.3f} ± {entry['ssim_std']:.3f}", diff_text, wins_text,
                     f"{entry['seconds_per_image']:.2f}"])
    print(markdown_table(["setting", "method", "PSNR (dB)", "SSIM", "PSNR - TV (± s.e.)", "beats TV", "s/image"],
                         rows), flush=True)
    return record


def parse_setting(text: str) -> tuple[int, float]:
    spokes, _, sigma = text.partition(":")
    return int(spokes), float(sigma)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="slice set .h5 (validation split with --tune, else test)")
    parser.add_argument("--weights", default="real-knee", help="weight set (default real-knee)")
    parser.add_argument("--settings", nargs="+", type=parse_setting, default=[(25, 0.05), (25, 0.0125), (45, 0.05)],
                        metavar="SPOKES:SIGMA", help="radial settings (default 25:0.05 25:0.0125 45:0.05)")
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS))
    parser.add_argument("--images", type=int, default=None, help="use N images evenly spaced through the set")
    parser.add_argument("--tune", action="store_true", help="grid-search TV alpha and lambda/mu (validation data!)")
    parser.add_argument("--write-tuned", action="store_true", help="with --tune: write into the weight set's tuned/")
    parser.add_argument("--variants", nargs="+", default=["eq12"], choices=list(VARIANTS),
                        help="with --tune: solver variants tried for mean+diagonal and mean+covar (the best is kept)")
    parser.add_argument("--lambda-grid", nargs="+", type=float, default=list(LAMBDA_GRID),
                        help="with --tune: the starting lambda grid (grown while the optimum is on an edge)")
    parser.add_argument("--mu-grid", nargs="+", type=float, default=list(MU_GRID),
                        help="with --tune: the starting mu grid; one value fixes mu")
    parser.add_argument("--out", type=Path, default=Path("runs/bench_real.csv"),
                        help="evaluation: the genreg-evaluate results CSV (rows there are reused; default %(default)s)")
    parser.add_argument("--batch", type=int, default=16, help="evaluation: images per method call (default 16)")
    parser.add_argument("--device", default="cpu", help="evaluation: cpu, cuda or auto (default cpu)")
    args = parser.parse_args()
    set_threads()
    weight_set = use_weight_set(args.weights)
    if args.tune:
        images = load_images(args.data, args.images)
        print(f"{len(images)} images from {args.data}; weights {weight_set.name} ({weight_set.folder})", flush=True)
        tuned_all = {}
        for spokes, sigma in args.settings:
            print(f"tuning radial:{spokes}, sigma {sigma}", flush=True)
            tuned_all[(spokes, sigma)] = tune_setting(images, spokes, sigma, args.methods, tuple(args.variants),
                                                      tuple(args.lambda_grid), tuple(args.mu_grid))
            if args.write_tuned:  # after each setting: a long run keeps what it has found
                write_tuned(active_weight_set().tuned_dir, {(spokes, sigma): tuned_all[(spokes, sigma)]},
                            f"{Path(args.data).name}, {len(images)} images")
        print(json.dumps({f"{s}:{g}": t for (s, g), t in tuned_all.items()}))
        return
    records = []
    for spokes, sigma in args.settings:
        print(f"radial:{spokes}, sigma {sigma}", flush=True)
        records.append(evaluate_setting(args.data, args.images, spokes, sigma, args.methods, args.out, args.batch,
                                        args.device, args.weights))
    print(json.dumps({"data": args.data, "weights": weight_set.name, "out": str(args.out), "settings": records}))


if __name__ == "__main__":
    main()
