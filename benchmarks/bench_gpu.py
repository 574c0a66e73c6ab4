"""Throughput of the main methods on a CUDA device: images per second for batched runs.

    python benchmarks/bench_gpu.py [--device cuda] [--batches 1 16 64] [--methods tv mean+covar varnet]

Held-out test phantoms (seeds 1,000,000+), radial 25 spokes, sigma 0.05, each method's defaults (mean+covar with its
posterior std map). One warm-up run per method and batch size (CUDA context, cuDNN autotuning) is not timed; the
timed run is synchronised. Prints a markdown table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from common import TEST_SEED, make_problem, phantoms  # noqa: I001
from genreg_viewer.recon import run_method


def timed(method: str, images: torch.Tensor, device: str) -> tuple[float, float]:
    """Seconds of one synchronised run over ``images`` and its mean PSNR."""
    problem = make_problem(images, "radial:25", 0.05, seed=0, device=device)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = run_method(method, problem)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start, float(result.psnr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--methods", nargs="+", default=["tv", "mean+covar", "mean+diagonal", "varnet", "pnp-admm"])
    args = parser.parse_args()
    rows = []
    name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu"
    for method in args.methods:
        for batch in args.batches:
            images = phantoms(batch, TEST_SEED)
            timed(method, images, args.device)  # warm-up
            seconds, psnr = timed(method, images, args.device)
            rows.append({"method": method, "batch": batch, "seconds": round(seconds, 3),
                         "images_per_second": round(batch / seconds, 2), "psnr": round(psnr, 2)})
            print(f"| {method} | {batch} | {seconds:.2f} s | {batch / seconds:.1f} | {psnr:.2f} |", flush=True)
    print(json.dumps({"device": name, "torch": torch.__version__, "rows": rows}))


if __name__ == "__main__":
    main()
