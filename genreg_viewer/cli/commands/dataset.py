"""``genreg dataset build FASTMRI_DIR OUT.h5 --slices-near-centre K``: build a slice set from fastMRI volumes."""

from __future__ import annotations

import json
import sys

from ...data.dataset import ANY_ACQUISITION, DEFAULT_ACQUISITION, build_slice_set


def register(subparsers) -> None:
    p = subparsers.add_parser("dataset", help="build training/test slice sets from fastMRI volumes")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    build = actions.add_parser(
        "build", help="preprocess the slices near the centre of every fastMRI volume in a folder into one .h5",
        description="Take K slices around the centre of each fastMRI .h5 volume in FASTMRI_DIR (not its "
        "sub-folders), centre-crop, resize with an anti-aliasing filter, scale to [0, 1] and write them to OUT.h5 "
        "(datasets images, volume, slice). Build the training set from fastMRI's train folder and the test set "
        "from its validation folder.",
    )
    build.add_argument("fastmri_dir", metavar="FASTMRI_DIR", help="folder of fastMRI .h5 volumes")
    build.add_argument("out", metavar="OUT.h5", help="slice set to write")
    build.add_argument("--slices-near-centre", type=int, required=True, metavar="K",
                       help="number of slices taken around the centre slice of each volume (8 ~ slices 13-20 of 35)")
    build.add_argument("--size", type=int, default=128, help="image side after resizing (default 128)")
    build.add_argument("--acquisition", default=DEFAULT_ACQUISITION,
                       help=f"keep only volumes with this acquisition attribute (default {DEFAULT_ACQUISITION}, "
                       f"as in the paper), or '{ANY_ACQUISITION}'")
    build.add_argument("--no-progress", action="store_true", help="no progress bar")
    build.add_argument("--json", action="store_true", help="print a JSON summary")
    build.set_defaults(func=run)


def run(args) -> int:
    summary = build_slice_set(args.fastmri_dir, args.out, args.slices_near_centre, size=args.size,
                              acquisition=args.acquisition, progress=not args.no_progress)
    for name, reason in summary.skipped:
        print(f"warning: skipped {name}: {reason}", file=sys.stderr)
    if args.json:
        print(json.dumps({**vars(summary), "skipped": [list(s) for s in summary.skipped]}))
    else:
        print(summary.line())
    return 0
