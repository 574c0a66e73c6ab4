"""Benchmark of the extra generative priors (issue 8): ``flow-prior`` and ``latent-vi`` (with the VAE and with the
flow latent) against the adjoint.

    python benchmarks/bench_priors.py                       # 4 held-out phantoms, the three settings below
    python benchmarks/bench_priors.py --count 8 --tune      # first grid-search flow-prior gamma and latent-vi beta
                                                            # on validation phantoms (seeds 2,000,000+)

Settings: radial 25 spokes with sigma 0.05 and 0.0125, radial 125 spokes with sigma 0.05. Prints a markdown table
of mean PSNR / SSIM over held-out phantoms (seeds 1,000,000+) and the seconds per image (all images of a setting are
reconstructed as one batch; ``GENREG_THREADS`` sets the torch threads, default 2).
"""

from __future__ import annotations

import argparse

import torch

from common import (
    TEST_SEED, VALIDATION_SEED, make_problem, markdown_table, per_image_psnr_ssim, phantoms, set_threads, timed_run,
)

SETTINGS = ((25, 0.05), (25, 0.0125), (125, 0.05))
GAMMA_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
BETA_GRID = (0.1, 0.3, 1.0)
#: (row label, method, fixed parameters)
RUNS = (
    ("adjoint", "adjoint", {}),
    ("flow-prior", "flow-prior", {}),
    ("latent-vi (VAE)", "latent-vi", {}),
    ("latent-vi (flow)", "latent-vi", {"generator": "flow", "mc_samples": 2}),
)


def tune_setting(spokes: int, sigma: float, count: int, iterations: dict[str, int]) -> dict[str, dict]:
    """Best flow-prior gamma and latent-vi data_weight (mean PSNR) on validation phantoms."""
    problem = make_problem(phantoms(count, VALIDATION_SEED), f"radial:{spokes}", sigma, seed=1)
    grids = {"flow-prior": ("gamma", GAMMA_GRID), "latent-vi": ("data_weight", BETA_GRID)}
    tuned = {}
    for method, (name, grid) in grids.items():
        scores = {}
        for value in grid:
            result, _ = timed_run(method, problem, {name: value}, iterations[method])
            scores[value] = float(per_image_psnr_ssim(result, problem)[0].mean())
        best = max(scores, key=scores.get)
        tuned[method] = {name: best}
        print(f"  {method} {name}: {scores} -> {best}", flush=True)
    return tuned


def evaluate(spokes: int, sigma: float, count: int, iterations: dict[str, int],
             tuned: dict[str, dict]) -> list[list[str]]:
    problem = make_problem(phantoms(count, TEST_SEED), f"radial:{spokes}", sigma, seed=0)
    rows = []
    for label, method, fixed in RUNS:
        params = {**fixed, **(tuned.get(method) or {})}
        result, seconds = timed_run(method, problem, params, iterations.get(method))
        psnr, ssim = per_image_psnr_ssim(result, problem)
        extra = ""
        if "std_map" in result.extras:
            extra = f"mean std {float(result.extras['std_map'].mean()):.4f}"
        rows.append([
            f"radial {spokes}", f"{sigma:g}", label, f"{psnr.mean():.2f} ± {psnr.std():.2f}", f"{ssim.mean():.3f}",
            f"{seconds / count:.1f}", ", ".join(f"{k}={v}" for k, v in params.items()) or "defaults", extra,
        ])
        print("  " + " | ".join(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=4, help="held-out phantoms per setting (default 4)")
    parser.add_argument("--flow-iterations", type=int, default=None, help="flow-prior iterations (default: method's)")
    parser.add_argument("--vi-iterations", type=int, default=None, help="latent-vi iterations (default: method's)")
    parser.add_argument("--tune", action="store_true", help="grid-search gamma / beta on 2 validation phantoms first")
    args = parser.parse_args()
    set_threads()
    iterations = {"flow-prior": args.flow_iterations, "latent-vi": args.vi_iterations}
    rows = []
    for spokes, sigma in SETTINGS:
        print(f"radial {spokes}, sigma {sigma}", flush=True)
        tuned = tune_setting(spokes, sigma, 2, iterations) if args.tune else {}
        rows += evaluate(spokes, sigma, args.count, iterations, tuned)
    header = ["mask", "sigma", "method", "PSNR (dB)", "SSIM", "s / image", "parameters", "uncertainty"]
    print()
    print(markdown_table(header, rows))
    print(f"\n{args.count} held-out phantoms (seeds {TEST_SEED}+), noise seed 0, "
          f"torch threads {torch.get_num_threads()}")


if __name__ == "__main__":
    main()
