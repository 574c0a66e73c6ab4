"""``genreg mask SPEC --out FILE``: build a sampling mask and save it as PNG or NPY."""

from __future__ import annotations

import json

from ...physics import MASK_SAVE_SUFFIXES, check_mask_save_path, mask_from_spec, save_mask


def register(subparsers) -> None:
    p = subparsers.add_parser("mask", help="build a sampling mask from a spec and save it")
    p.add_argument("spec", help="radial:N, golden:N, cartesian:CENTRE_ROWS:P, random:FRACTION, full, or a file")
    p.add_argument("--out", required=True, help=f"output file ({' or '.join(MASK_SAVE_SUFFIXES)})")
    p.add_argument("--size", type=int, nargs=2, default=(128, 128), metavar=("H", "W"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(func=run)


def run(args) -> int:
    check_mask_save_path(args.out)  # refuse an unsupported suffix before building the mask
    mask = mask_from_spec(args.spec, tuple(args.size), args.seed)
    save_mask(mask, args.out)
    info = {"spec": args.spec, "out": args.out, "shape": list(mask.shape), "sampled_fraction": float(mask.mean())}
    print(json.dumps(info) if args.json else f"{args.spec}: {100 * mask.mean():.2f}% of k-space -> {args.out}")
    return 0
