"""Time the synthetic knee phantom generator (target: <= ~20 ms per 128x128 phantom on one core).

Usage: python benchmarks/bench_phantom.py [--count 200] [--size 128]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, as when generating training data

from genreg_viewer.data.phantom import knee_phantom  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args()
    knee_phantom(0, args.size)  # warm-up (imports, allocator)
    times = []
    cpu_start = time.process_time()
    for seed in range(args.count):
        start = time.perf_counter()
        knee_phantom(seed, args.size)
        times.append(time.perf_counter() - start)
    cpu = (time.process_time() - cpu_start) / args.count  # CPU time: less sensitive to other processes' load
    times.sort()
    median, p90 = times[len(times) // 2], times[int(0.9 * (len(times) - 1))]
    print(f"knee_phantom {args.size}x{args.size}: median {1e3 * median:.1f} ms, p90 {1e3 * p90:.1f} ms, "
          f"{args.count / sum(times):.0f} phantoms/s over {args.count}; CPU time {1e3 * cpu:.1f} ms per phantom")


if __name__ == "__main__":
    main()
