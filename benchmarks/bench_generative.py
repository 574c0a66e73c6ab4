"""Generative reconstruction benchmark (issue 5): PSNR/SSIM/seconds over held-out phantoms, tuning, range curve.

    python benchmarks/bench_generative.py                         # 20 test phantoms, 25 spokes, sigma 0.05 and 0.0125
    python benchmarks/bench_generative.py --tune --write-tuned    # grid-search lambda, mu (and TV alpha) on validation
                                                                  # phantoms first; ship them in resources/tuned/
    python benchmarks/bench_generative.py --curve                 # PSNR against spokes (range saturates)
    python benchmarks/bench_generative.py --speed                 # one image, defaults
    python benchmarks/bench_generative.py --throughput [--device cuda]   # batched mean+covar

Tuning follows the paper: each setting's parameters are chosen by grid search for the best mean PSNR, here on
validation phantoms (seeds 2,000,000+) disjoint from the test phantoms (seeds 1,000,000+) and the training set.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from common import (
    TEST_SEED, VALIDATION_SEED, make_problem, markdown_table, per_image_psnr_ssim, phantoms, set_threads, timed_run,
)

from genreg_viewer.tuning import GENERATIVE_TABLE, TUNED_DIR, VARIANTS, interior_grid_search, merge_tuned
from genreg_viewer.tuning import JOINT_METHODS as JOINT

TUNED_FILE = TUNED_DIR / GENERATIVE_TABLE  #: the phantom set's table
#: starting grids (log-spaced); every axis grows while its optimum sits on an edge, inside BOUNDS
LAMBDA_GRID = (0.03, 0.1, 0.3, 1.0)
MU_GRID = (0.25, 1.0, 4.0)  # mu = 1 is the VAE's own N(0, I) prior
TV_GRID = (0.005, 0.01, 0.02, 0.04)
BOUNDS = {"alpha": (1e-4, 1.0), "lam": (1e-4, 100.0), "mu": (0.004, 1000.0)}


def mean_psnr(method, problem, params, iterations=None) -> float:
    result, _ = timed_run(method, problem, params, iterations)
    return float(per_image_psnr_ssim(result, problem)[0].mean())


def tune(setting: tuple[int, float], count: int, iterations: int | None, edges: list[str],
         variants: tuple[str, ...] = ("eq12",)) -> dict[str, dict]:
    """Grid-search TV's alpha and each joint method's lambda and mu on ``count`` validation phantoms, every grid grown
    until its optimum is interior (or a bound is hit: then ``edges`` gets a line naming it). mean+diagonal and
    mean+covar are tuned once per solver variant and keep the best (its non-default parameters are written too)."""
    spokes, sigma = setting
    problem = make_problem(phantoms(count, VALIDATION_SEED), f"radial:{spokes}", sigma, seed=1)
    tuned: dict[str, dict] = {}
    searches = [("tv", {"alpha": TV_GRID}, {}, "")] + [
        (method, {"lam": LAMBDA_GRID, "mu": MU_GRID}, {"posterior_samples": 0, **VARIANTS[variant]}, variant)
        for method in JOINT for variant in (("eq12",) if method == "mean+identity" else variants)]
    best_score: dict[str, float] = {}
    for method, grids, extra, variant in searches:
        def score(params: dict[str, float], method=method, extra=extra, variant=variant) -> float:
            value = mean_psnr(method, problem, {**params, **extra}, iterations if method in JOINT else None)
            print(f"    {method} {variant} {params}: {value:.2f} dB", flush=True)
            return value

        best, scores, on_edge = interior_grid_search(score, grids, BOUNDS)
        value = scores[tuple(best.values())]
        where = f"ON AN EDGE: {', '.join(on_edge)} (bound reached)" if on_edge else "interior"
        print(f"  {method} {variant}: best {best} ({value:.2f} dB, {where}, {len(scores)} points)", flush=True)
        if value > best_score.get(method, -float("inf")):
            best_score[method] = value
            tuned[method] = {**best, **VARIANTS.get(variant, {})}
            edges[:] = [e for e in edges if not e.startswith(f"{spokes}:{sigma} {method} ")]
            edges += [f"{spokes}:{sigma} {method} {name}={best[name]}" for name in on_edge]
    return tuned


def evaluate(setting, methods, count, tuned, iterations) -> list[list[str]]:
    spokes, sigma = setting
    problem = make_problem(phantoms(count, TEST_SEED), f"radial:{spokes}", sigma, seed=0)
    rows = []
    for method in methods:
        params = dict(tuned.get(method, {}))
        if method in JOINT:
            params.setdefault("posterior_samples", 0)
        result, seconds = timed_run(method, problem, params, iterations if method in JOINT else None)
        psnr, ssim = per_image_psnr_ssim(result, problem)
        rows.append([f"{spokes} spokes, sigma {sigma}", method, f"{psnr.mean():.2f} ± {psnr.std():.2f}",
                     f"{ssim.mean():.3f}", f"{seconds / count:.2f}", json.dumps(params)])
        print("  " + " | ".join(rows[-1]), flush=True)
    return rows


def spokes_curve(count: int, sigma: float, spokes_list, methods) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = phantoms(count, TEST_SEED)
    curves = {m: [] for m in methods}
    for spokes in spokes_list:
        problem = make_problem(images, f"radial:{spokes}", sigma, seed=0)
        for method in methods:
            params = {"posterior_samples": 0} if method in JOINT else {}
            result, _ = timed_run(method, problem, params)
            curves[method].append(float(per_image_psnr_ssim(result, problem)[0].mean()))
        print(f"  {spokes} spokes: " + ", ".join(f"{m} {curves[m][-1]:.2f}" for m in methods), flush=True)
    figure, axes = plt.subplots(figsize=(5, 3.5), dpi=120)
    for method, values in curves.items():
        axes.plot(spokes_list, values, marker="o", label=method)
    axes.set_xlabel("radial spokes")
    axes.set_ylabel("PSNR (dB)")
    axes.set_title(f"PSNR against spokes, sigma {sigma}, {count} phantoms")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    out = Path(__file__).resolve().parent.parent / "docs" / "psnr_vs_spokes.png"
    figure.savefig(out)
    print(markdown_table(["spokes"] + list(methods),
                         [[str(s)] + [f"{curves[m][i]:.2f}" for m in methods] for i, s in enumerate(spokes_list)]))
    print(f"wrote {out}")


def speed(repeats: int = 3) -> None:
    """Seconds for one 128x128 reconstruction with the shipped defaults (joint methods: to convergence, with the
    posterior std map), and mean+covar with the optional L-BFGS z-steps for comparison."""
    problem = make_problem(phantoms(1, TEST_SEED), "radial:25", 0.05, seed=0)
    runs = [("tv", {}, None)] + [(m, {}, None) for m in JOINT] + [
        ("mean+covar", {"z_optimiser": "lbfgs"}, None)]
    rows = []
    for method, params, iterations in runs:
        times, result = [], None
        for _ in range(repeats):
            result, seconds = timed_run(method, problem, params, iterations)
            times.append(seconds)
        label = method + (" (" + ", ".join(f"{k}={v}" for k, v in params.items()) + ")" if params else "")
        rows.append([label, f"{np.median(times):.2f}", str(result.iterations), f"{result.psnr:.2f}"])
        print("  " + " | ".join(rows[-1]), flush=True)
    print(markdown_table(["method (1 image, defaults)", "median seconds", "iterations", "PSNR (dB)"], rows))


def write_tuned(tuned_all: dict[tuple[int, float], dict[str, dict]]) -> None:
    """Merge the tuned parameters into resources/tuned (entries of other settings are kept)."""
    if merge_tuned(TUNED_FILE, tuned_all, JOINT):
        print(f"wrote {TUNED_FILE}")


def throughput(device: str, batches=(1, 4, 16, 64)) -> None:
    """Seconds per image of batched mean+covar (defaults, no std map) on ``device``: many images are solved as one
    batch (per-image line searches and CG step sizes), which is what a GPU is for."""
    rows = []
    for batch in batches:
        problem = make_problem(phantoms(batch, TEST_SEED), "radial:25", 0.05, seed=0, device=device)
        timed_run("mean+covar", problem, {"posterior_samples": 0}, 2)  # warm-up (kernels, model on device)
        result, seconds = timed_run("mean+covar", problem, {"posterior_samples": 0})
        psnr = per_image_psnr_ssim(result, problem)[0].mean()
        rows.append([str(batch), f"{seconds:.2f}", f"{seconds / batch:.3f}", str(result.iterations), f"{psnr:.2f}"])
        print("  " + " | ".join(rows[-1]), flush=True)
    print(markdown_table([f"batch ({device})", "seconds", "s/image", "outer iterations", "mean PSNR (dB)"], rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--settings", nargs="*", default=["25:0.05", "25:0.0125"], help="SPOKES:SIGMA (none: skip)")
    parser.add_argument("--methods", nargs="+", default=["adjoint", "tv", *JOINT, "range"])
    parser.add_argument("--iterations", type=int, default=None,
                        help="outer iterations of the joint methods (default: their cap, stopping at convergence)")
    parser.add_argument("--tune", action="store_true")
    parser.add_argument("--tune-images", type=int, default=4)
    parser.add_argument("--write-tuned", action="store_true", help="write the tuned parameters to resources/tuned")
    parser.add_argument("--variants", nargs="+", default=["eq12"], choices=list(VARIANTS),
                        help="solver variants tuned for mean+diagonal and mean+covar (the best is kept)")
    parser.add_argument("--curve", action="store_true")
    parser.add_argument("--curve-images", type=int, default=5)
    parser.add_argument("--speed", action="store_true", help="only time single-image reconstructions")
    parser.add_argument("--throughput", action="store_true", help="only time batched mean+covar (see --device)")
    parser.add_argument("--device", default="cpu", help="device of --throughput (cpu, cuda)")
    args = parser.parse_args()
    set_threads()
    if args.speed:
        speed()
        return
    if args.throughput:
        throughput(args.device)
        return
    settings = [(int(s.split(":")[0]), float(s.split(":")[1])) for s in args.settings]
    tuned_all = {}
    rows = []
    edges: list[str] = []
    for setting in settings:
        print(f"setting {setting}", flush=True)
        tuned = tune(setting, args.tune_images, args.iterations, edges, tuple(args.variants)) if args.tune else {}
        tuned_all[setting] = tuned
        rows += evaluate(setting, args.methods, args.images, tuned, args.iterations)
    print()
    print(markdown_table(["setting", "method", "PSNR (dB)", "SSIM", "s/image", "params"], rows))
    if args.tune:
        print("tuned values on a grid edge: " + ("; ".join(edges) if edges else "none (every optimum is interior)"))
    if args.tune and args.write_tuned:
        write_tuned(tuned_all)
    if args.curve:
        spokes_curve(args.curve_images, 0.05, [5, 15, 25, 45, 85, 125], ["tv", "range", "mean+covar"])


if __name__ == "__main__":
    main()
