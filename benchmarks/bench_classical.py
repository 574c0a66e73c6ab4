"""Classical reconstructions at the paper's setting (128x128, 25 radial spokes, sigma = 0.05): quality and speed.

Prints markdown tables:

1. adjoint, lsq and tv on the bundled sample phantoms (and held-out test phantoms): mean PSNR/SSIM, iterations,
   seconds per image;
2. tv against sigpy's ``sigpy.mri.app.TotalVariationRecon`` on the same data and mask (skipped when sigpy is not
   installed: ``pip install sigpy``), both at their own best weight from the same grid and at the same weight;
3. tv to convergence on one 128x128 image: median seconds on 1 and 2 torch threads (with the load average: on a
   busy 2-core machine two threads are many times slower for these small FFTs);
4. with ``--tune-alpha``: the grid search behind ``genreg_viewer.recon.classical.default_alpha`` (validation
   phantoms, 25 and 45 spokes, sigma 0.02 / 0.05 / 0.1).

Fair comparison with sigpy: it solves ``min_x 1/2 ||A x - y||^2 + lamda ||G x||_1`` over *complex* x, where
``G`` is the periodic finite difference and ``||.||_1`` the sum of complex magnitudes of each difference
(anisotropic TV), by PDHG with both the data term and ``G`` dualised (``sigma = 1``, ``tau`` from a power
iteration). The data term has exactly our scaling (orthonormal FFT, factor 1/2), so ``lamda`` and ``alpha`` are
comparable. Our k-space (DC at index 0) becomes sigpy's centred, centre-origin convention as
``fftshift(y * (-1)^(i + j))`` (checked: sigpy's adjoint of it equals our ``A^H y``). sigpy's real part is scored
(the truth is real; its imaginary part is pure noise), clipped to [0, 1] like ours. sigpy runs until its
relative iterate change is 1e-5 (``SIGPY_RELATIVE_CHANGE``; ours stops on its primal-dual gap), capped at
``--sigpy-max-iter``; its time includes
the power iteration it needs for the step size.

    python benchmarks/bench_classical.py [--count 16] [--tune-alpha] [--quick]
"""

from __future__ import annotations

import argparse
import glob
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import TEST_SEED, VALIDATION_SEED, make_problem, markdown_table, phantoms  # noqa: E402

from genreg_viewer import metrics  # noqa: E402
from genreg_viewer.paths import SAMPLES_DIR  # noqa: E402
from genreg_viewer.recon import Problem, run_method  # noqa: E402
from genreg_viewer.recon.classical import default_alpha  # noqa: E402

MASK, SIGMA = "radial:25", 0.05
#: sigpy's stop: relative iterate change (what genreg's tv used before it stopped on the primal-dual gap)
SIGPY_RELATIVE_CHANGE = 1e-5
ALPHA_GRID = (0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05)


def sample_images() -> torch.Tensor:
    files = sorted(glob.glob(str(SAMPLES_DIR / "knee_phantom_*.npy")))
    if not files:
        raise SystemExit(f"no sample phantoms in {SAMPLES_DIR}")
    return torch.from_numpy(np.stack([np.load(f) for f in files]))[:, None]


def single(problem: Problem, index: int) -> Problem:
    measurement = problem.measurement
    item = type(measurement)(measurement.y[index : index + 1], measurement.operator, measurement.sigma)
    return Problem(item, problem.ground_truth[index : index + 1], seed=problem.seed, weight_set=problem.weight_set)


def per_image_runs(method: str, problem: Problem, params: dict | None = None, iterations: int | None = None):
    """Mean PSNR, SSIM, iterations and seconds over single-image runs (the time a user waits for one slice)."""
    psnrs, ssims, counts, seconds = [], [], [], []
    for index in range(problem.batch_size):
        result = run_method(method, single(problem, index), params, iterations)
        psnrs.append(result.psnr)
        ssims.append(result.ssim)
        counts.append(result.iterations)
        seconds.append(result.seconds)
    return float(np.mean(psnrs)), float(np.mean(ssims)), float(np.mean(counts)), float(np.mean(seconds))


def method_table(sets: dict[str, torch.Tensor]) -> None:
    rows = []
    for name, images in sets.items():
        problem = make_problem(images, MASK, SIGMA, seed=0)
        for method in ("adjoint", "lsq", "tv"):
            psnr, ssim, iterations, seconds = per_image_runs(method, problem)
            rows.append([name, method, f"{psnr:.2f}", f"{ssim:.4f}", f"{iterations:.0f}", f"{seconds:.3f}"])
    print(f"\n### Classical methods, {MASK}, sigma {SIGMA} (mean over images, one image per run)\n")
    print(markdown_table(["images", "method", "PSNR (dB)", "SSIM", "iterations", "seconds / image"], rows))


# ---------------------------------------------------------------------------------------------------- sigpy


def sigpy_kspace(problem: Problem) -> np.ndarray:
    """Our measurements (DC at index 0) in sigpy's centred convention, one ``(1, H, W)`` array per image."""
    y = problem.y[:, 0].cpu().numpy()
    rows, cols = np.indices(y.shape[-2:])
    return np.fft.fftshift(y * (-1.0) ** (rows + cols), axes=(-2, -1)).astype(np.complex64)[:, None]


def check_sigpy_convention(problem: Problem) -> None:
    """sigpy's adjoint of the converted data must be our ``A^H y`` (same image, same k-space)."""
    import sigpy.mri as mr

    kspace = sigpy_kspace(problem)[0]
    sense = mr.linop.Sense(np.ones_like(kspace), weights=problem.operator.mask.astype(np.float32))
    ours = problem.operator.adjoint(problem.y)[0, 0].cpu().numpy()
    error = np.abs(sense.H(kspace) - ours).max()
    if error > 1e-4 * np.abs(ours).max():
        raise SystemExit(f"k-space conversion for sigpy is wrong (max error {error:.3g})")


def sigpy_tv(kspace: np.ndarray, mask: np.ndarray, lamda: float, tolerance: float, max_iter: int):
    """sigpy's TV recon of one image (its default PDHG, step sizes from its power iteration): (real image,
    seconds, iterations)."""
    import sigpy.mri as mr

    start = time.perf_counter()
    app = mr.app.TotalVariationRecon(kspace, np.ones_like(kspace), lamda, weights=mask.astype(np.float32),
                                     max_iter=max_iter, tol=tolerance, show_pbar=False)
    image = app.run()
    return np.real(image), time.perf_counter() - start, app.alg.iter


def sigpy_runs(problem: Problem, lamda: float, relative_tolerance: float, max_iter: int):
    """Mean PSNR, SSIM, iterations, seconds of sigpy over the images.

    sigpy stops when ``||x_k - x_{k-1}|| / sqrt(tau) <= tol`` (absolute); ``tol = relative_tolerance * ||A^H y||
    / sqrt(1/9)`` makes that our relative criterion (``tau ~ 1 / (||A||^2 + ||G||^2) = 1/9``, ``||x|| ~
    ||A^H y||``).
    """
    kspace = sigpy_kspace(problem)
    mask = problem.operator.mask
    truth = problem.ground_truth.cpu()
    scale = problem.zero_filled().flatten(1).norm(dim=1).cpu().numpy() * 3.0
    psnrs, ssims, iterations, seconds = [], [], [], []
    for index in range(problem.batch_size):
        image, elapsed, count = sigpy_tv(kspace[index], mask, lamda, relative_tolerance * scale[index], max_iter)
        clipped = torch.from_numpy(np.clip(image, 0, 1).astype(np.float32))[None, None]
        psnrs.append(float(metrics.psnr(clipped, truth[index : index + 1])))
        ssims.append(float(metrics.ssim(clipped, truth[index : index + 1])))
        iterations.append(count)
        seconds.append(elapsed)
    return float(np.mean(psnrs)), float(np.mean(ssims)), float(np.mean(iterations)), float(np.mean(seconds))


def best_on_grid(evaluate, grid) -> tuple[float, tuple]:
    scores = {value: evaluate(value) for value in grid}
    best = max(scores, key=lambda value: scores[value][0])
    return best, scores[best]


def sigpy_table(images: torch.Tensor, max_iter: int, grid) -> None:
    try:
        import sigpy  # noqa: F401
    except ImportError:
        print("\n(sigpy is not installed: 'pip install sigpy' to compare with sigpy.mri.app.TotalVariationRecon)")
        return
    problem = make_problem(images, MASK, SIGMA, seed=0)
    check_sigpy_convention(problem)
    tolerance = SIGPY_RELATIVE_CHANGE  # sigpy stops on the iterate change; genreg's tv on its primal-dual gap
    ours_best, ours = best_on_grid(lambda a: per_image_runs("tv", problem, {"alpha": a}), grid)
    theirs_best, theirs = best_on_grid(lambda a: sigpy_runs(problem, a, tolerance, max_iter), grid)
    rows = [
        ["genreg tv (isotropic, real, box)", f"{ours_best:g}", *_cells(ours)],
        ["sigpy TotalVariationRecon (anisotropic, complex)", f"{theirs_best:g}", *_cells(theirs)],
        ["sigpy, its default max_iter=100", f"{theirs_best:g}", *_cells(sigpy_runs(problem, theirs_best, 0.0, 100))],
        ["sigpy, converged (tol 0, max_iter {max_iter})".format(max_iter=max_iter), f"{theirs_best:g}",
         *_cells(sigpy_runs(problem, theirs_best, 0.0, max_iter))],
    ]
    if theirs_best != ours_best:
        rows.append(["sigpy at genreg's best weight", f"{ours_best:g}",
                     *_cells(sigpy_runs(problem, ours_best, tolerance, max_iter))])
    rows.append(["genreg tv, converged (tolerance 0, 3000 iterations)", f"{ours_best:g}",
                 *_cells(per_image_runs("tv", problem, {"alpha": ours_best, "tolerance": 0.0}, 3000))])
    rows.append(["genreg tv, constraint=none", f"{ours_best:g}",
                 *_cells(per_image_runs("tv", problem, {"alpha": ours_best, "constraint": "none"}))])
    print(f"\n### TV against sigpy, {MASK}, sigma {SIGMA}, {problem.batch_size} sample phantoms "
          f"(best weight from {list(grid)}; sigpy stops at relative change {tolerance:g}, genreg's tv at its "
          f"default primal-dual gap)\n")
    print(markdown_table(["implementation", "weight", "PSNR (dB)", "SSIM", "iterations", "seconds / image"], rows))


def _cells(scores: tuple[float, float, float, float]) -> list[str]:
    psnr, ssim, iterations, seconds = scores
    return [f"{psnr:.2f}", f"{ssim:.4f}", f"{iterations:.0f}", f"{seconds:.3f}"]


# --------------------------------------------------------------------------------------------------- timing


def timing_table(image: torch.Tensor, repeats: int) -> None:
    problem = make_problem(image, MASK, SIGMA, seed=0)
    initial = torch.get_num_threads()
    rows = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        run_method("tv", problem)  # warm-up
        runs = [run_method("tv", problem) for _ in range(repeats)]
        seconds = statistics.median(r.seconds for r in runs)
        rows.append([str(threads), str(runs[0].iterations), f"{seconds:.3f}",
                     f"{1000 * seconds / runs[0].iterations:.2f}", f"{os.getloadavg()[0]:.1f}"])
    torch.set_num_threads(initial)
    print(f"\n### tv to convergence on one 128x128 image (median of {repeats}; includes metrics of the final "
          f"state)\n")
    print(markdown_table(["torch threads", "iterations", "seconds", "ms / iteration", "load average"], rows))


# ------------------------------------------------------------------------------------------------ alpha grid


def alpha_tuning_table(count: int) -> None:
    images = phantoms(count, VALIDATION_SEED)
    rows = []
    for spokes in (25, 45):
        for sigma in (0.02, 0.05, 0.1):
            problem = make_problem(images, f"radial:{spokes}", sigma, seed=0)
            scores = {a: run_method("tv", problem, {"alpha": a}).psnr for a in ALPHA_GRID}
            best = max(scores, key=scores.get)
            rule = default_alpha(sigma)
            at_rule = run_method("tv", problem, {"alpha": rule}).psnr
            rows.append([str(spokes), f"{sigma:g}", f"{best:g}", f"{scores[best]:.2f}", f"{rule:g}", f"{at_rule:.2f}",
                         " ".join(f"{scores[a]:.2f}" for a in ALPHA_GRID)])
    print(f"\n### TV weight grid search on {count} validation phantoms (PSNR in dB for alpha = "
          f"{', '.join(map(str, ALPHA_GRID))})\n")
    print(markdown_table(["spokes", "sigma", "best alpha", "best PSNR", "default_alpha", "PSNR at default",
                          "PSNR per alpha"], rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=16, help="held-out test phantoms besides the 6 samples")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the quality tables (default 1)")
    parser.add_argument("--repeats", type=int, default=5, help="timing repeats")
    parser.add_argument("--sigpy-max-iter", type=int, default=3000)
    parser.add_argument("--tune-alpha", action="store_true", help="also print the alpha grid search")
    parser.add_argument("--quick", action="store_true", help="samples only, a smaller grid, fewer repeats")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    samples = sample_images()
    sets = {"6 samples": samples}
    if not args.quick and args.count > 0:
        sets[f"{args.count} test phantoms"] = phantoms(args.count, TEST_SEED)
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    method_table(sets)
    sigpy_table(samples, args.sigpy_max_iter, (0.01, 0.02, 0.03) if args.quick else (0.005, 0.01, 0.015, 0.02,
                                                                                       0.03, 0.05))
    timing_table(samples[:1], 3 if args.quick else args.repeats)
    if args.tune_alpha:
        alpha_tuning_table(8)


if __name__ == "__main__":
    main()
