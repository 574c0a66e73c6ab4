"""``genreg info FILE``: what a data file holds (datasets, shapes, dtypes, attributes, slices; image size/mode)."""

from __future__ import annotations

import json

from ...application.bundles import is_bundle
from ...application.session_schema import describe_bundle
from ...data.loading import describe_file


def register(subparsers) -> None:
    p = subparsers.add_parser("info", help="show what a data file (fastMRI .h5, slice set, image, .npy, a saved "
                              "session or result) holds")
    p.add_argument("file", help="fastMRI .h5 volume, slice set .h5, .png/.tif/.jpg image, .npy or .npz, or a "
                                "session/results bundle (genreg recon --out, the app)")
    p.add_argument("--json", action="store_true", help="print the description as JSON")
    p.set_defaults(func=run)


def _format_value(value, width: int = 100) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def format_description(info: dict) -> str:
    """Human-readable multi-line rendering of :func:`~genreg_viewer.data.loading.describe_file`'s dict."""
    lines = [info["summary"], f"  size on disk: {info['size_bytes']} bytes"]
    if info.get("image_key") is not None and info.get("num_slices", 0) > 1:
        lines.append(f"  slices: {info['num_slices']} (default: centre slice {info['num_slices'] // 2})")
    if "problem" in info:
        lines.append(f"  note: {info['problem']}")
    rows = info.get("datasets") or info.get("arrays") or []
    if rows:
        lines.append("  datasets:" if "datasets" in info else "  arrays:")
        width = max(len(r["name"]) for r in rows)
        lines += [f"    {r['name']:<{width}}  {str(tuple(r['shape'])) if r['shape'] is not None else '(empty)':<20} "
                  f"{r['dtype']}" for r in rows]
    if info.get("attributes"):
        lines.append("  attributes:")
        lines += [f"    {k} = {_format_value(v)}" for k, v in sorted(info["attributes"].items())]
    if info.get("kind") == "fastmri":
        lines.append(f"  ISMRMRD header: {'yes' if info['has_ismrmrd_header'] else 'no'}")
    return "\n".join(lines)


def format_bundle(info: dict) -> str:
    """Human-readable rendering of :func:`~genreg_viewer.application.session_schema.describe_bundle`'s dict."""
    lines = [info["summary"], f"  size on disk: {info['size_bytes']} bytes",
             f"  image: {info['image']}" + ("" if info["has_ground_truth"] else " (no ground truth stored)"),
             f"  measurement: mask {info['mask']}, sigma {info['sigma']}, seed {info['seed']}"]
    for run in info["runs"]:
        quality = "" if run.get("psnr") is None else f", PSNR {run['psnr']:.2f} dB, SSIM {run['ssim']:.4f}"
        extras = f", arrays: {', '.join(run['extras'])}" if run.get("extras") else ""
        lines.append(f"  run {run['run_id']}: {run['method']} ({run['title']}){quality}; {run['iterations']} "
                     f"iterations in {run['seconds']:.2f} s{extras}")
    lines.append("  open it in the app with File > Open session, or read it with "
                 "genreg_viewer.application.bundles.read_bundle")
    return "\n".join(lines)


def run(args) -> int:
    if is_bundle(args.file):  # written by genreg recon --out or the app
        bundle = describe_bundle(args.file)
        print(json.dumps(bundle, indent=2) if args.json else format_bundle(bundle))
        return 0
    info = describe_file(args.file)
    print(json.dumps(info, indent=2) if args.json else format_description(info))
    return 0
