"""Calibration of the posterior std maps on real knees and on phantoms, and the figure of docs/CALIBRATION.md.

    # measure (fits the std factor on validation images and stores it in each weight set's tuned/calibration.json)
    python benchmarks/bench_calibration.py --test TEST.h5 --validation VAL.h5 --write --reports runs/calibration
    # only redraw the figure from the two reports
    python benchmarks/bench_calibration.py --plot-only --reports runs/calibration

Runs ``genreg calibrate`` twice at radial 25, sigma 0.05: the real-knee weight set on ``--test`` (``--images``
evenly spaced, never used for fitting) with the factor fitted on ``--validation`` (``--fit-images``), and the phantom
set on held-out phantoms (seeds 1,000,000+) with the factor fitted on validation phantoms (2,000,000+). Writes
``real.json`` and ``phantom.json`` into ``--reports`` and the two-panel plot to ``--png`` (numbers only, no image of
the data).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from genreg_viewer.cli.main import main as genreg  # noqa: E402
from genreg_viewer.evaluation.calibration import plot_calibration  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--test", help="held-out real slice set (e.g. mrnet_test_c8.h5)")
    parser.add_argument("--validation", help="validation real slice set the factor is fitted on (mrnet_val_c8.h5)")
    parser.add_argument("--images", type=int, default=16, help="test images (default 16)")
    parser.add_argument("--fit-images", type=int, default=12, help="validation images (default 12)")
    parser.add_argument("--write", action="store_true", help="store the fitted factors in the weight sets")
    parser.add_argument("--reports", type=Path, default=Path("runs/calibration"), help="folder of the JSON reports")
    parser.add_argument("--png", type=Path, default=Path("docs/figures/calibration.png"))
    parser.add_argument("--plot-only", action="store_true", help="redraw the figure from existing reports")
    parser.add_argument("--threads", default="1")
    args = parser.parse_args()
    common = ["--mask", "radial:25", "--noise", "0.05", "--batch", "8", "--threads", args.threads, "--device", "cpu",
              *(["--write"] if args.write else [])]
    runs = {
        "real": ([args.test or "", "--images", str(args.images), "--fit-on", args.validation or "",
                  "--fit-images", str(args.fit_images), "--weights", "real-knee"],
                 f"real knees (MRNet test, {args.images} slices), real-knee set"),
        "phantom": (["phantom:16:1000000", "--fit-on", "phantom:12:2000000", "--weights", "phantom"],
                    "16 test phantoms, phantom set"),
    }
    if not args.plot_only:
        if not args.test or not args.validation:
            parser.error("--test and --validation are needed (or --plot-only)")
        args.reports.mkdir(parents=True, exist_ok=True)
        for name, (data_args, _title) in runs.items():
            status = genreg(["calibrate", *data_args, *common, "--report", str(args.reports / f"{name}.json")])
            if status:
                raise SystemExit(status)
    panels = []
    for name, (_data_args, title) in runs.items():
        report = json.loads((args.reports / f"{name}.json").read_text())
        panels.append((f"{title}\nradial 25, sigma {report['sigma']:g}", report))
    plot_calibration(panels, args.png)
    print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
