"""Per-image reconstruction cost of every method in *machine units*, on one and two threads.

    python benchmarks/bench_speed.py                                   # the bundled sample, every fast method
    python benchmarks/bench_speed.py --data real_test.h5 --images 4    # slices of a set too (real-knee weights)
    python benchmarks/bench_speed.py --methods tv mean+covar --threads 1

One machine unit is the time of 200 numpy FFT pairs (``fft2`` then ``ifft2``) of a 128 x 128 complex64 image, measured
in the same process right before and right after each method (the median of three tries each, the mean of the two),
so a number in units compares across machines and survives a machine that other jobs slow down (the brief's rule:
timings as ratios in one run). Each row is one reconstruction of one 128 x 128 image at radial 25, sigma 0.05 with
the method's shipped defaults (mean+covar and mean+diagonal with their 16-sample posterior std map, as the app runs
them), after one untimed warm-up run (model loading, caches); PSNR is against the ground truth.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import make_problem  # noqa: E402

from genreg_viewer.data.dataset import load_slice_set  # noqa: E402
from genreg_viewer.paths import RESOURCES_DIR  # noqa: E402
from genreg_viewer.recon import get_method, method_names, run_method  # noqa: E402
from genreg_viewer.weight_sets import use_weight_set  # noqa: E402

#: methods left out unless named: minutes per image on a CPU (DIP, Narnhofer19) or seconds of restarts (range)
SLOW = ("dip", "narnhofer19", "range", "latent-vi", "edip")
FFT_PAIRS = 200


def machine_unit(tries: int = 3) -> float:
    """Seconds for :data:`FFT_PAIRS` numpy ``fft2`` + ``ifft2`` pairs of a 128 x 128 complex64 image (median)."""
    rng = np.random.default_rng(0)
    image = (rng.standard_normal((128, 128)) + 1j * rng.standard_normal((128, 128))).astype(np.complex64)
    times = []
    for _ in range(tries):
        start = time.perf_counter()
        for _ in range(FFT_PAIRS):
            np.fft.ifft2(np.fft.fft2(image))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def timed(method: str, image: torch.Tensor) -> tuple[float, float, float]:
    """``(seconds, units, psnr)`` of one run on ``image`` (1, 1, 128, 128), after an untimed warm-up."""
    problem = make_problem(image, "radial:25", 0.05, seed=0)
    run_method(method, problem)  # warm-up: loads the networks, fills caches
    before = machine_unit()
    start = time.perf_counter()
    result = run_method(method, problem)
    seconds = time.perf_counter() - start
    unit = 0.5 * (before + machine_unit())
    return seconds, seconds / unit, float(np.mean(result.psnr)) if result.psnr is not None else float("nan")


def images(args) -> list[tuple[str, str, torch.Tensor]]:
    """``(label, weight set, image)``: the bundled sample (phantom weights) and ``--images`` slices of ``--data``."""
    sample = np.load(RESOURCES_DIR / "samples" / "knee_phantom_000.npy").astype(np.float32)
    chosen = [("bundled sample", "phantom", torch.from_numpy(sample)[None, None])]
    if args.data:
        slices = load_slice_set(args.data)
        for index in np.linspace(0, len(slices) - 1, args.images).round().astype(int):
            chosen.append((f"{Path(args.data).name}[{index}]", args.weights,
                           torch.from_numpy(np.ascontiguousarray(slices[index], dtype=np.float32))[None, None]))
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=None, help="default: every registered method but the slow ones")
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--data", help="slice set .h5: also time --images of its slices")
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--weights", default="real-knee", help="weight set of the --data slices (default real-knee)")
    parser.add_argument("--json", type=Path, help="also write every row as JSON")
    args = parser.parse_args()
    methods = args.methods or [m for m in method_names() if m not in SLOW and get_method(m).available()[0]]
    rows = []
    print("| image | method | threads | seconds | units | PSNR (dB) |")
    print("|---|---|---|---|---|---|")
    for label, weight_set, image in images(args):
        use_weight_set(weight_set)
        for threads in args.threads:
            torch.set_num_threads(threads)
            for method in methods:
                seconds, units, psnr = timed(method, image)
                rows.append({"image": label, "weights": weight_set, "method": method, "threads": threads,
                             "seconds": seconds, "units": units, "psnr": psnr})
                print(f"| {label} | {method} | {threads} | {seconds:.3f} | {units:.1f} | {psnr:.2f} |", flush=True)
    unit = machine_unit()
    print(f"\none unit ({FFT_PAIRS} numpy FFT pairs, 128 x 128 complex64) = {1000 * unit:.1f} ms here now")
    if args.json:
        args.json.write_text(json.dumps({"unit_seconds": unit, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
