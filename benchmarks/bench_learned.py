"""Learned-baseline benchmark (issue 6): PSNR and seconds of pnp-admm, varnet, dip and edip (with tv and adjoint
for reference) over held-out phantoms, at the variational network's three training settings and at settings it was
not trained on.

    python benchmarks/bench_learned.py                      # 2 test phantoms, all settings: ~6-13 min on 2 shared
                                                            # cores, almost all of it DIP/eDIP (~30 s + ~12 s/image)
    python benchmarks/bench_learned.py --images 5 --methods pnp-admm varnet adjoint
    python benchmarks/bench_learned.py --settings radial:25@0.05 cartesian:16:0.25@0.05

Settings are ``MASK_SPEC@SIGMA``. Expected pattern (the paper's finding): the variational network is best where it
was trained and degrades elsewhere (it then runs the nearest trained network; the ``varnet used`` column says which),
while the unsupervised methods (dip, edip, tv) behave consistently across settings.
"""

from __future__ import annotations

import argparse
import time

from common import TEST_SEED, make_problem, markdown_table, per_image_psnr_ssim, phantoms, set_threads, timed_run

from genreg_viewer.recon import get_method, method_names

TRAINED = ("radial:25@0.05", "radial:25@0.0125", "radial:125@0.05")
UNTRAINED = ("radial:5@0.05", "radial:45@0.05", "cartesian:16:0.25@0.05")
METHODS = ("adjoint", "tv", "pnp-admm", "varnet", "dip", "edip")


def parse_setting(text: str) -> tuple[str, float]:
    spec, _, sigma = text.rpartition("@")
    if not spec:
        raise SystemExit(f"setting {text!r} must look like MASK_SPEC@SIGMA, e.g. radial:25@0.05")
    return spec, float(sigma)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2, help="held-out phantoms per setting (default 2)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--settings", nargs="+", default=list(TRAINED + UNTRAINED))
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    set_threads()
    available = []
    for name in args.methods:
        if name not in method_names():
            print(f"skipping {name}: not registered")
            continue
        ok, why = get_method(name).available()
        if not ok:
            print(f"skipping {name}: {why}")
            continue
        available.append(name)
    images = phantoms(args.images, TEST_SEED)
    psnr_rows, time_rows = [], []
    start = time.perf_counter()
    for text in args.settings:
        spec, sigma = parse_setting(text)
        problem = make_problem(images, spec, sigma, seed=0, device=args.device)
        psnrs, seconds, varnet_setting = [], [], ""
        for name in available:
            result, elapsed = timed_run(name, problem)
            psnrs.append(f"{per_image_psnr_ssim(result, problem)[0].mean():.2f}")
            seconds.append(f"{elapsed / args.images:.1f}")
            if name == "varnet":
                varnet_setting = result.extras.get("trained_setting", "")
                varnet_setting += "" if result.extras.get("exact_setting") else " (nearest)"
            print(f"  {text:24s} {name:10s} {psnrs[-1]} dB  {seconds[-1]} s/image", flush=True)
        trained = "yes" if text in TRAINED else "no"
        extra = [varnet_setting] if "varnet" in available else []
        psnr_rows.append([f"{spec} sigma={sigma:g}", trained, *psnrs, *extra])
        time_rows.append([f"{spec} sigma={sigma:g}", *seconds])
    print()
    print(f"Mean PSNR (dB) over {args.images} held-out phantoms (seeds {TEST_SEED}+), default parameters:\n")
    header = ["setting", "VN trained here", *available] + (["varnet used"] if "varnet" in available else [])
    print(markdown_table(header, psnr_rows))
    print("\nSeconds per image:\n")
    print(markdown_table(["setting", *available], time_rows))
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
