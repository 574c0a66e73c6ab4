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
``default <= 1.5 x best`` for every row. An exit status of 1 means the default missed the bound somewhere.
"""

from __future__ import annotations

import argparse
import json
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
#: the default must stay within this factor of the best setting
BOUND = 1.5


def _burn() -> None:  # pragma: no cover - runs in a child process
    while True:
        pass


def _time_in_child(workload: str, threads: str, iterations: int) -> dict:
    """Run ``--child`` in a fresh interpreter (thread pool configured first); its JSON line."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "GENREG_THREADS"):
        env.pop(name, None)
    command = [sys.executable, __file__, "--child", workload, threads, str(iterations)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{workload} with {threads} threads failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _child(workload: str, threads: str, iterations: int) -> None:
    import torch

    from benchmarks.common import TEST_SEED, make_problem, phantoms
    from genreg_viewer.device import configure_threads
    from genreg_viewer.recon import run_method

    method, images, _, _ = WORKLOADS[workload]
    problem = make_problem(phantoms(images, TEST_SEED), "radial:25", 0.05)
    used = configure_threads(None if threads == "default" else int(threads), problem.y.shape)
    run_method(method, problem, iterations=2)  # warm-up: lazy imports, weight loading, allocator
    start = time.perf_counter()
    result = run_method(method, problem, iterations=iterations)
    seconds = time.perf_counter() - start
    print(json.dumps({"threads": used, "seconds": seconds, "iterations": result.iterations,
                      "torch_threads": torch.get_num_threads()}))


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
                seconds: dict[str, float] = {}
                chosen = None
                for _ in range(args.repeats):  # settings interleaved, so a burst of other work hits all of them
                    for setting in ("1", "2", "default"):
                        run = _time_in_child(workload, setting, iterations)
                        seconds[setting] = min(seconds.get(setting, float("inf")), run["seconds"])
                        if setting == "default":
                            chosen = run["threads"]
                best = min(seconds.values())
                within = seconds["default"] <= BOUND * best
                ok &= within
                rows.append([workload, images, iterations, load, *(f"{seconds[s]:.2f}" for s in ("1", "2", "default")),
                             chosen, *(f"{seconds[s] / best:.2f}" for s in ("1", "2", "default")),
                             "yes" if within else "NO"])
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
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        _child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        sys.exit(main())
