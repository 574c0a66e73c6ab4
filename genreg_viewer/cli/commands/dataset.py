"""``genreg dataset build [--format fastmri|mrnet|refinegan|dicom|mat] SOURCE OUT.h5``: build a slice set from
fastMRI volumes, MRNet exams, RefineGAN's knees, DICOM series or a MATLAB array; ``genreg dataset merge OUT.h5
IN.h5 ...``: concatenate slice sets of one size."""

from __future__ import annotations

import json
import sys
from typing import Any

from ...data import limits
from ...data.dataset import ANY_ACQUISITION, DEFAULT_ACQUISITION, build_slice_set
from ...data.errors import DataError
from ...data.mrnet import MRNET_PLANES

FORMATS = ("fastmri", "mrnet", "refinegan", "dicom", "mat")


def register(subparsers) -> None:
    p = subparsers.add_parser("dataset", help="build training/test slice sets (fastMRI, MRNet, RefineGAN knees, "
                              "DICOM, MATLAB) and merge them")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    build = actions.add_parser(
        "build", help="preprocess slices of fastMRI / MRNet / RefineGAN / DICOM / MATLAB data into one .h5",
        description="Take K slices around the centre of each fastMRI .h5 volume in FASTMRI_DIR (not its "
        "sub-folders), centre-crop, resize with an anti-aliasing filter, scale to [0, 1] and write them to OUT.h5 "
        "(datasets images, volume, slice). Build the training set from fastMRI's train folder and the test set "
        "from its validation folder. With --format mrnet, DIR holds MRNet's <plane>/NNNN.npy stacks (any depth): "
        "choose planes and exam numbers (split by exam so no patient is in two sets). With --format refinegan, DIR "
        "holds RefineGAN's db_train/db_valid N.tif slices (real, imaginary frames); their subjects are recovered by "
        "clustering and numbered by their first file, choose them with --subjects. With --format dicom, every DICOM "
        "file below DIR, one volume per series. With --format mat, SOURCE is a .mat file: the 3-D array --key "
        "sliced along --axis.",
    )
    build.add_argument("fastmri_dir", metavar="SOURCE",
                       help="folder of fastMRI .h5 volumes (or of MRNet exams, RefineGAN slices, DICOM files), or a "
                       ".mat file (--format mat)")
    build.add_argument("out", metavar="OUT.h5", help="slice set to write")
    build.add_argument("--format", choices=FORMATS, default="fastmri",
                       help="fastmri: .h5 volumes (default); mrnet: MRNet's uint8 .npy stacks; refinegan: RefineGAN's "
                       "knee TIFFs; dicom: DICOM series; mat: a 3-D array in a MATLAB file")
    build.add_argument("--slices-near-centre", type=int, default=None, metavar="K",
                       help="number of slices taken around the centre slice of each volume (8 ~ slices 13-20 of 35); "
                       "required for fastMRI; MRNet default: every slice that is not empty background; DICOM/mat "
                       "default: every slice that is not constant; not for refinegan")
    build.add_argument("--planes", default="coronal", metavar="LIST",
                       help=f"MRNet planes, comma-separated among {','.join(MRNET_PLANES)} or 'all' (default coronal)")
    build.add_argument("--exams", default=None, metavar="RANGES",
                       help="MRNet exam numbers to keep, e.g. 0-1124 or 1130- or 0-10,1120-1124 (default all)")
    build.add_argument("--subjects", default=None, metavar="RANGES",
                       help="RefineGAN subjects to keep (numbered 0-19 by their first file), e.g. 0-13 (default all)")
    build.add_argument("--slices-per-subject", type=int, default=None, metavar="N",
                       help="RefineGAN: slices of each subject (default 10); the build refuses files that do not "
                       "cluster into whole subjects of N")
    build.add_argument("--key", default=None, metavar="NAME",
                       help="mat: the variable holding the 3-D array (needed when the file has several)")
    build.add_argument("--axis", type=int, default=None, metavar="N",
                       help="mat: the axis to slice along (default: the axis with the largest, most square slices)")
    build.add_argument("--rotate", type=int, default=0, choices=(0, 90, 180, 270), metavar="DEG",
                       help="mat: turn every slice 90, 180 or 270 degrees counter-clockwise (default 0)")
    build.add_argument("--terms", default=None, metavar="TEXT",
                       help="dicom/mat: the data's terms of use, recorded in the set (default: a reminder that the "
                       "files do not record them)")
    build.add_argument("--size", type=int, default=128, help="image side after resizing (default 128)")
    build.add_argument("--acquisition", default=DEFAULT_ACQUISITION,
                       help=f"keep only volumes with this acquisition attribute (default {DEFAULT_ACQUISITION}, "
                       f"as in the paper), or '{ANY_ACQUISITION}'")
    build.add_argument("--no-progress", action="store_true", help="no progress bar")
    build.add_argument("--json", action="store_true", help="print a JSON summary")
    build.set_defaults(func=run)

    merge = actions.add_parser(
        "merge", help="concatenate slice sets of one image size into one .h5",
        description="Copy the images of IN1.h5, IN2.h5, ... (slice sets of one image size) into OUT.h5, in order. "
        "A volume name found in several inputs is prefixed by its file's stem; the attribute 'sources' lists the "
        "inputs with their acquisitions and terms of use.",
    )
    merge.add_argument("out", metavar="OUT.h5", help="slice set to write")
    merge.add_argument("inputs", metavar="IN.h5", nargs="+", help="slice sets to merge (at least two)")
    merge.add_argument("--json", action="store_true", help="print a JSON summary")
    merge.set_defaults(func=run_merge)


def _refuse_options(args, fmt: str, allowed: set[str]) -> None:
    """Refuse options given for another format, so a mistyped command does not silently ignore them."""
    defaults = {"planes": "coronal", "exams": None, "subjects": None, "slices_per_subject": None, "key": None,
                "axis": None, "rotate": 0, "terms": None, "acquisition": DEFAULT_ACQUISITION}
    for name, default in defaults.items():
        if name not in allowed and getattr(args, name) != default:
            raise DataError(f"--{name.replace('_', '-')} does not apply to --format {fmt}")


def _build(args) -> Any:
    progress = not args.no_progress
    if args.format == "mrnet":
        from ...data.mrnet import build_mrnet_slice_set

        _refuse_options(args, "mrnet", {"planes", "exams"})
        text = args.planes.strip()
        planes = MRNET_PLANES if text == "all" else tuple(p.strip() for p in text.split(",") if p.strip())
        return build_mrnet_slice_set(args.fastmri_dir, args.out, planes=planes, exams=args.exams,
                                     slices_near_centre=args.slices_near_centre, size=args.size, progress=progress)
    if args.format == "refinegan":
        from ...data.refinegan import DEFAULT_SLICES_PER_SUBJECT, build_refinegan_slice_set

        _refuse_options(args, "refinegan", {"subjects", "slices_per_subject"})
        if args.slices_near_centre is not None:
            raise DataError("--slices-near-centre does not apply to --format refinegan (every slice of the chosen "
                            "subjects is kept; the files do not record slice positions)")
        per_subject = args.slices_per_subject if args.slices_per_subject is not None else DEFAULT_SLICES_PER_SUBJECT
        return build_refinegan_slice_set(args.fastmri_dir, args.out, subjects=args.subjects,
                                         slices_per_subject=per_subject, size=args.size, progress=progress)
    if args.format == "dicom":
        from ...data.dicom import build_dicom_slice_set

        _refuse_options(args, "dicom", {"terms"})
        return build_dicom_slice_set(args.fastmri_dir, args.out, slices_near_centre=args.slices_near_centre,
                                     size=args.size, terms=args.terms, progress=progress)
    if args.format == "mat":
        from ...data.matfile import build_mat_slice_set

        _refuse_options(args, "mat", {"key", "axis", "rotate", "terms"})
        return build_mat_slice_set(args.fastmri_dir, args.out, key=args.key, axis=args.axis,
                                   slices_near_centre=args.slices_near_centre, size=args.size, rotate=args.rotate,
                                   terms=args.terms, progress=progress)
    _refuse_options(args, "fastmri", {"acquisition"})
    if args.slices_near_centre is None:
        raise DataError("fastMRI slice sets need --slices-near-centre K (the paper's predecessor used 8)")
    return build_slice_set(args.fastmri_dir, args.out, args.slices_near_centre, size=args.size,
                           acquisition=args.acquisition, progress=progress)


def _report(summary, as_json: bool) -> int:
    for name, reason in summary.skipped:
        print(f"warning: skipped {name}: {reason}", file=sys.stderr)
    if as_json:
        print(json.dumps({**vars(summary), "skipped": [list(s) for s in summary.skipped]}))
    else:
        print(summary.line())
    return 0


def run(args) -> int:
    limits.check_side(args.size, "--size")  # before any volume is scanned or a file is created
    return _report(_build(args), args.json)


def run_merge(args) -> int:
    from ...data.merge import merge_slice_sets

    return _report(merge_slice_sets(args.out, args.inputs), args.json)
