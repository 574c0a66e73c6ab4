"""``genreg dataset build [--format fastmri|mrnet] DIR OUT.h5``: build a slice set from fastMRI or MRNet volumes."""

from __future__ import annotations

import json
import sys
from typing import Any

from ...data import limits
from ...data.dataset import ANY_ACQUISITION, DEFAULT_ACQUISITION, build_slice_set
from ...data.mrnet import MRNET_PLANES
from ...data.preprocess import DataError


def register(subparsers) -> None:
    p = subparsers.add_parser("dataset", help="build training/test slice sets from fastMRI or MRNet volumes")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    build = actions.add_parser(
        "build", help="preprocess the slices near the centre of every fastMRI volume in a folder into one .h5",
        description="Take K slices around the centre of each fastMRI .h5 volume in FASTMRI_DIR (not its "
        "sub-folders), centre-crop, resize with an anti-aliasing filter, scale to [0, 1] and write them to OUT.h5 "
        "(datasets images, volume, slice). Build the training set from fastMRI's train folder and the test set "
        "from its validation folder. With --format mrnet, DIR holds MRNet's <plane>/NNNN.npy stacks (any depth): "
        "choose planes and exam numbers (split by exam so no patient is in two sets).",
    )
    build.add_argument("fastmri_dir", metavar="DIR", help="folder of fastMRI .h5 volumes (or of MRNet exams)")
    build.add_argument("out", metavar="OUT.h5", help="slice set to write")
    build.add_argument("--format", choices=("fastmri", "mrnet"), default="fastmri",
                       help="fastmri: .h5 volumes (default); mrnet: MRNet's uint8 .npy stacks")
    build.add_argument("--slices-near-centre", type=int, default=None, metavar="K",
                       help="number of slices taken around the centre slice of each volume (8 ~ slices 13-20 of 35); "
                       "required for fastMRI; MRNet default: every slice that is not empty background")
    build.add_argument("--planes", default="coronal", metavar="LIST",
                       help=f"MRNet planes, comma-separated among {','.join(MRNET_PLANES)} or 'all' (default coronal)")
    build.add_argument("--exams", default=None, metavar="RANGES",
                       help="MRNet exam numbers to keep, e.g. 0-1124 or 1130- or 0-10,1120-1124 (default all)")
    build.add_argument("--size", type=int, default=128, help="image side after resizing (default 128)")
    build.add_argument("--acquisition", default=DEFAULT_ACQUISITION,
                       help=f"keep only volumes with this acquisition attribute (default {DEFAULT_ACQUISITION}, "
                       f"as in the paper), or '{ANY_ACQUISITION}'")
    build.add_argument("--no-progress", action="store_true", help="no progress bar")
    build.add_argument("--json", action="store_true", help="print a JSON summary")
    build.set_defaults(func=run)


def run(args) -> int:
    limits.check_side(args.size, "--size")  # before any volume is scanned or a file is created
    if args.format == "mrnet":
        from ...data.mrnet import build_mrnet_slice_set

        text = args.planes.strip()
        planes = MRNET_PLANES if text == "all" else tuple(p.strip() for p in text.split(",") if p.strip())
        summary: Any = build_mrnet_slice_set(args.fastmri_dir, args.out, planes=planes, exams=args.exams,
                                             slices_near_centre=args.slices_near_centre, size=args.size,
                                             progress=not args.no_progress)
    else:
        if args.slices_near_centre is None:
            raise DataError("fastMRI slice sets need --slices-near-centre K (the paper's predecessor used 8)")
        summary = build_slice_set(args.fastmri_dir, args.out, args.slices_near_centre, size=args.size,
                                  acquisition=args.acquisition, progress=not args.no_progress)
    for name, reason in summary.skipped:
        print(f"warning: skipped {name}: {reason}", file=sys.stderr)
    if args.json:
        print(json.dumps({**vars(summary), "skipped": [list(s) for s in summary.skipped]}))
    else:
        print(summary.line())
    return 0
