"""Held-out quality of the bundled VAEs (identity, diagonal, covar) and a sample grid ``docs/vae_samples.png``.

Prints a markdown table per covariance kind: PSNR of ``G(mu(x))`` against ``x``, the exact Gaussian nll of
``x + n`` (``n ~ N(0, 0.01^2)``, the training noise) in nats per pixel, and the lag-1 autocorrelation of residual
samples ``L^{-T} u`` (spatial structure of the modelled residual). The figure shows, for a few held-out phantoms:
the image, the mean ``G(mu(x))``, two samples from the covar model, covar and diagonal residual samples, the covar
pixel std map ``sqrt(diag Sigma)`` and the covar correlation row of one pixel.

Usage: python benchmarks/vae_report.py [--count 64] [--weights resources/weights] [--out docs/vae_samples.png]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from genreg_viewer.data.phantom import phantom_batch  # noqa: E402
from genreg_viewer.fileio import atomic_path  # noqa: E402
from genreg_viewer.models.vae import COVARIANCE_KINDS, load_generative_model  # noqa: E402
from genreg_viewer.training.vae import HELD_OUT_SEED, evaluate_model, lag_one_correlation  # noqa: E402


@torch.no_grad()
def mean_and_factor(model, x):
    mu, _ = model.encode(x)
    return model.decode_mean(mu), model.decode_cholesky(mu)


def sample_grid(models, images: torch.Tensor, path: Path, seed: int = 0) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    generator = torch.Generator().manual_seed(seed)
    columns = ["image x", "mean G(mu(x))", "covar sample", "covar sample", "covar residual", "diagonal residual",
               "covar std map", "covar correlation"]
    figure = Figure(figsize=(2.0 * len(columns), 2.1 * images.shape[0] + 0.3), dpi=90)
    for row in range(images.shape[0]):
        x = images[row:row + 1]
        mean, covar = mean_and_factor(models["covar"], x)
        _, diagonal = mean_and_factor(models["diagonal"], x)
        samples = covar.sample(mean, generator, count=3)[:, 0, 0]
        diagonal_residual = diagonal.sample(torch.zeros_like(mean), generator)[0, 0, 0]
        pixel = (64, 64)
        panels = [
            (x[0, 0], "gray", (0, 1)),
            (mean[0, 0], "gray", (0, 1)),
            (samples[0], "gray", (0, 1)),
            (samples[1], "gray", (0, 1)),
            (samples[2] - mean[0, 0], "RdBu_r", (-0.15, 0.15)),
            (diagonal_residual, "RdBu_r", (-0.15, 0.15)),
            (torch.from_numpy(np.sqrt(covar.variance_map(0))), "magma", (0, 0.15)),
            (torch.from_numpy(covar.correlation_row(*pixel)), "RdBu_r", (-1, 1)),
        ]
        for col, (image, cmap, (lo, hi)) in enumerate(panels):
            axis = figure.add_subplot(images.shape[0], len(columns), row * len(columns) + col + 1)
            shown = image.detach().float().cpu().numpy()
            if col == len(columns) - 1:  # zoom on the pixel's neighbourhood
                shown = shown[pixel[0] - 8:pixel[0] + 9, pixel[1] - 8:pixel[1] + 9]
            axis.imshow(shown, cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(columns[col] + (" (17x17 zoom)" if col == len(columns) - 1 else ""), fontsize=8)
    figure.suptitle("Bundled VAEs on held-out phantoms (residual colour range +-0.15, std map 0..0.15)", fontsize=9)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=64, help="held-out phantoms (seeds from 1_000_000)")
    parser.add_argument("--weights", default=None, help="weights folder (default: the bundled resources/weights)")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "docs" / "vae_samples.png"))
    parser.add_argument("--rows", type=int, default=3, help="phantoms shown in the figure")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    images = torch.from_numpy(phantom_batch(args.count, HELD_OUT_SEED)).unsqueeze(1)
    models = {kind: load_generative_model(kind, args.weights) for kind in COVARIANCE_KINDS}
    generator = torch.Generator().manual_seed(1)
    print(f"held-out phantoms: {args.count} (seeds {HELD_OUT_SEED}..{HELD_OUT_SEED + args.count - 1}); "
          f"nll of x + N(0, 0.01^2) noise at z = mu(x), nats/pixel incl. 1/2 log(2 pi)\n")
    print("| kind | PSNR (dB) | nll (nats/pixel) | lag-1 corr. of residual samples | seconds |")
    print("| --- | --- | --- | --- | --- |")
    for kind, model in models.items():
        start = time.perf_counter()
        result = evaluate_model(model, images)
        mean, factor = mean_and_factor(model, images[:8])
        correlation = lag_one_correlation(factor.sample(mean, generator, count=2) - mean)
        print(f"| {kind} | {result['psnr']:.2f} | {result['nll']:.4f} | {correlation:.3f} | "
              f"{time.perf_counter() - start:.1f} |")
    sample_grid(models, images[:args.rows], Path(args.out))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
