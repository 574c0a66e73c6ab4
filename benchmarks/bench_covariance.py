"""Timings of the sparse-Cholesky covariance operations at 128x128 (3x3 and 5x5 neighbourhoods).

Prints a markdown table of median wall-clock times. Run from the repository root:

    python benchmarks/bench_covariance.py [--size 128] [--repeats 15] [--threads 2] [--samples 16] [--batch 8]

"fresh" rows include the per-instance set-up (float64 CSR copy of ``L`` and its fill-free SuperLU object; for the
correlation row also the exact variance map); the other rows reuse the instance's caches, which is what an
interactive covariance inspector does while the user drags over one image.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse.linalg
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout without `pip install -e`
from genreg_viewer.models.cholesky import SparseCholesky, neighbour_offsets  # noqa: E402


def make_factor(k: int, size: int, batch: int, seed: int = 0, requires_grad: bool = False) -> SparseCholesky:
    """A well-conditioned random factor resembling a trained one: std ~ 0.05, weights ~ 10% of the diagonal."""
    gen = torch.Generator().manual_seed(seed)
    log_diag = 3.0 + 0.3 * torch.randn(batch, 1, size, size, generator=gen)
    off_diag = 0.1 * torch.exp(log_diag) * torch.randn(batch, len(neighbour_offsets(k)), size, size, generator=gen)
    return SparseCholesky(log_diag.requires_grad_(requires_grad), off_diag.requires_grad_(requires_grad), k)


def median_ms(operation, repeats: int, setup=lambda: None) -> float:
    """Median over ``repeats`` runs of ``operation(setup())`` in milliseconds (setup not timed; one warm-up)."""
    operation(setup())
    times = []
    for _ in range(repeats):
        state = setup()
        start = time.perf_counter()
        operation(state)
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def benchmark(k: int, size: int, repeats: int, samples: int, batch: int) -> dict[str, float]:
    factor = make_factor(k, size, 1)
    centre = (size // 2, size // 3)
    mean = torch.full((1, 1, size, size), 0.5)
    fresh = lambda: make_factor(k, size, 1)  # noqa: E731
    results = {
        "covariance row (fresh instance)": median_ms(lambda f: f.covariance_row(*centre), repeats, fresh),
        "covariance row": median_ms(lambda _: factor.covariance_row(*centre), repeats),
        "variance map (exact, fresh)": median_ms(lambda f: f.variance_map(), max(3, repeats // 3), fresh),
        "correlation row (fresh: + variance map)": median_ms(lambda f: f.correlation_row(*centre),
                                                             max(3, repeats // 3), fresh),
        "correlation row (cached variance)": median_ms(lambda _: factor.correlation_row(*centre), repeats),
        f"{samples} samples": median_ms(lambda _: factor.sample(mean, torch.Generator().manual_seed(0), samples),
                                        repeats),
    }
    # one triangular solve L^-1 b: the cached fill-free SuperLU object against scipy's spsolve_triangular
    lower = factor._lower_csr(0)
    rhs = np.random.default_rng(0).standard_normal(size * size)
    factor._solve_columns(0, rhs, False)  # builds the cached SuperLU object
    results["L^-1 b (cached SuperLU)"] = median_ms(lambda _: factor._solve_columns(0, rhs, False), repeats)
    results["L^-1 b (scipy spsolve_triangular)"] = median_ms(
        lambda _: scipy.sparse.linalg.spsolve_triangular(lower, rhs, lower=True), max(3, repeats // 3))
    trainable = make_factor(k, size, batch, requires_grad=True)
    x = torch.rand(batch, 1, size, size)
    x_mean = torch.rand(batch, 1, size, size, requires_grad=True)

    def nll_step(_):
        trainable.nll(x, x_mean).sum().backward()

    results[f"nll forward+backward (B={batch}, float32)"] = median_ms(nll_step, repeats)
    v = torch.randn(batch, 1, size, size)
    frozen = trainable.detach()
    results[f"precision_mul L L^T v (B={batch})"] = median_ms(lambda _: frozen.precision_mul(v), repeats)
    return results


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    columns = {k: benchmark(k, args.size, args.repeats, args.samples, args.batch) for k in (3, 5)}
    print(f"Sparse-Cholesky covariance ops, {args.size}x{args.size}, torch threads {args.threads}, "
          f"median of {args.repeats} (ms)\n")
    print("| operation | 3x3 | 5x5 |")
    print("| --- | ---: | ---: |")
    for name in columns[3]:
        print(f"| {name} | {columns[3][name]:.1f} | {columns[5][name]:.1f} |")


if __name__ == "__main__":
    main()
