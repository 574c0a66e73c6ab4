"""Torch CPU thread counts: 1 and 2 threads against the default, with and without a CPU-burning neighbour.

    python benchmarks/bench_threads.py                 # every workload, idle and loaded, ratios to the best
    python benchmarks/bench_threads.py --quick         # fewer iterations (about a minute on an idle machine)
    python benchmarks/bench_threads.py --workloads tv tv-batch --repeats 3

Each timing runs in a fresh Python process (torch's thread pool is set before any work, as the CLI does) on held-out
test phantoms, radial 25 spokes, sigma 0.05: ``tv`` (one image, the method's 1000 iterations), ``mean+covar`` (one
image), ``tv-batch`` and ``mean+covar-batch`` (32 and 8 images as one batch; fewer iterations). "default" is what
:func:`genreg_viewer.device.default_thread_count` picks for the problem (the CLI's and the app's choice without
``--threads``). The load is one busy-looping process per neighbour (``--neighbours``, default 1), started a second
before the timed run. Printed: seconds and the ratio to the best setting of the same workload and load; the check
``default <= 1.5 x best`` for every row. A setting more than 10 times slower than the fastest so far is stopped
(cancelled between iterations; shown as ``>`` its time limit). An exit status of 1 means the default missed the
bound somewhere.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

#: workload -> (method, images, iterations, quick iterations)
WORKLOADS = {
    "tv": ("tv", 1, 1000, 300),
    "mean+covar": ("mean+covar", 1, 80, 10),
    "tv-batch": ("tv", 32, 300, 50),
    "mean+covar-batch": ("mean+covar", 8, 20, 5),
}
#: a child repeats a run shorter than this (up to 5 times) and reports the fastest
MIN_CHILD_SECONDS = 2.0
#: a run is stopped after max(TIMEOUT_SECONDS, TIMEOUT_FACTOR x the fastest setting so far) seconds
TIMEOUT_SECONDS, TIMEOUT_FACTOR = 20.0, 10.0
#: the default must stay within this factor of the best setting
BOUND = 1.5


def _burn() -> None:  # pragma: no cover - runs in a child process
    while True:
        pass


def _time_in_child(workload: str, threads: str, iterations: int, limit: float | None = None) -> dict:
    """Run ``--child`` in a fresh interpreter (thread pool configured first) and return its JSON line; with
    ``limit`` the child cancels a run after that many seconds and reports ``seconds: inf``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "GENREG_THREADS"):
        env.pop(name, None)
    command = [sys.executable, __file__, "--child", workload, threads, str(iterations), str(limit or 0)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{workload} with {threads} threads failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _child(workload: str, threads: str, iterations: int, limit: float) -> None:
    import torch

    from benchmarks.common import TEST_SEED, make_problem, phantoms
    from genreg_viewer.device import configure_threads
    from genreg_viewer.recon import run_method

    method, images, _, _ = WORKLOADS[workload]
    problem = make_problem(phantoms(images, TEST_SEED), "radial:25", 0.05)
    used = configure_threads(None if threads == "default" else int(threads), problem.y.shape)
    run_method(method, problem, iterations=2)  # warm-up: lazy imports, weight loading, allocator
    times = []
    while not times or (sum(times) < MIN_CHILD_SECONDS and len(times) < 5):  # short runs: the fastest of several
        start = time.perf_counter()
        deadline = start + limit if limit > 0 else math.inf
        result = run_method(method, problem, iterations=iterations,
                            cancel=lambda deadline=deadline: time.perf_counter() > deadline)
        times.append(math.inf if result.cancelled else time.perf_counter() - start)
    report = {"threads": used, "seconds": min(times), "torch_threads": torch.get_num_threads()}
    if math.isinf(report["seconds"]):
        report["timeout"] = limit
    print(json.dumps(report))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workloads", nargs="+", choices=list(WORKLOADS), default=list(WORKLOADS))
    parser.add_argument("--quick", action="store_true", help="fewer iterations per run")
    parser.add_argument("--repeats", type=int, default=2, help="timings per setting; the fastest counts")
    parser.add_argument("--neighbours", type=int, default=1, help="CPU-burning processes in the loaded runs")
    parser.add_argument("--loads", nargs="+", choices=["idle", "loaded"], default=["idle", "loaded"])
    args = parser.parse_args(argv)

    print(f"cpus {os.cpu_count()}, affinity {len(os.sched_getaffinity(0))}, "
          f"load average {os.getloadavg()[0]:.2f} at start", flush=True)
    rows = []
    ok = True
    for load in args.loads:
        burners: list[multiprocessing.Process] = []
        if load == "loaded":
            burners = [multiprocessing.Process(target=_burn, daemon=True) for _ in range(args.neighbours)]
            for burner in burners:
                burner.start()
            time.sleep(1.0)
        try:
            for workload in args.workloads:
                _, images, iterations, quick = WORKLOADS[workload]
                iterations = quick if args.quick else iterations
                seconds: dict[str, float] = {}  # fastest run of each setting (inf: every run was stopped)
                limits: dict[str, float] = {}  # the time limit a stopped setting ran into
                chosen = None
                for _ in range(args.repeats):  # settings interleaved, so a burst of other work hits all of them
                    for setting in ("1", "default", "2"):
                        # a setting far slower than the others is stopped (its time is then a lower bound)
                        finished = [value for value in seconds.values() if math.isfinite(value)]
                        limit = max(TIMEOUT_SECONDS, TIMEOUT_FACTOR * min(finished)) if finished else None
                        run = _time_in_child(workload, setting, iterations, limit)
                        seconds[setting] = min(seconds.get(setting, math.inf), run["seconds"])
                        if "timeout" in run:
                            limits[setting] = run["timeout"]
                        if setting == "default":
                            chosen = run["threads"]
                best = min(seconds.values())
                within = seconds["default"] <= BOUND * best
                ok &= within
                shown = {s: (f"{seconds[s]:.2f}", f"{seconds[s] / best:.2f}") if math.isfinite(seconds[s])
                         else (f">{limits[s]:.0f}", f">{limits[s] / best:.0f}") for s in seconds}
                rows.append([workload, images, iterations, load, *(shown[s][0] for s in ("1", "2", "default")),
                             chosen, *(shown[s][1] for s in ("1", "2", "default")), "yes" if within else "NO"])
                print(" | ".join(str(c) for c in rows[-1]), flush=True)
        finally:
            for burner in burners:
                burner.terminate()
                burner.join()
    header = ["workload", "images", "iterations", "load", "1 thread s", "2 threads s", "default s", "default threads",
              "1 / best", "2 / best", "default / best", f"default <= {BOUND} x best"]
    print()
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--child":
        _child(sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]))
    else:
        sys.exit(main())
