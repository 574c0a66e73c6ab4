"""``genreg covariance IMAGE --model covar --pixel ROW,COL``: the learned covariance row at a pixel.

Encodes the image with the VAE encoder (z = encoder mean), builds the sparse Cholesky factor L(z) of the precision
and computes the correlation row ``Sigma e_i / sqrt(Sigma_ii diag(Sigma))`` (value 1 at the pixel) by sparse
triangular solves; or with ``--kind covariance`` the covariance row ``Sigma e_i = L^{-T} L^{-1} e_i`` itself.
"""

from __future__ import annotations

import json
import time

import numpy as np
import torch

from ...data.loading import load_image
from ...fileio import atomic_path, check_writable
from ...render import save_correlation_png
from ..common import add_weights_argument, apply_weights_argument


def _pixel(text: str) -> tuple[int, int]:
    try:
        row, col = (int(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--pixel must be ROW,COL (two integers), got {text!r}") from None
    return row, col


def register(subparsers) -> None:
    p = subparsers.add_parser("covariance", help="correlation/covariance row of the learned covariance at a pixel")
    p.add_argument("image", help="image file (fastMRI .h5, PNG/TIFF/JPEG, .npy/.npz)")
    p.add_argument("--model", default="covar", choices=("covar", "diagonal", "identity"), help="bundled VAE kind")
    add_weights_argument(p)
    p.add_argument("--pixel", required=True, help="ROW,COL of the pixel")
    p.add_argument("--kind", default="correlation", choices=("correlation", "covariance"))
    p.add_argument("--slice", type=int, default=None, help="slice of a volume (default: centre)")
    p.add_argument("--key", default=None, metavar="NAME", help="HDF5 dataset or .npz array holding the image")
    p.add_argument("--out", default=None, help="write the row as .npy")
    p.add_argument("--png", default=None, help="write a red/blue map as PNG")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    from ...models.vae import load_generative_model

    row, col = _pixel(args.pixel)
    for option in ("--out", "--png"):  # before the model is loaded and run
        value = getattr(args, option[2:])
        if value is not None:
            check_writable(value, option)
    from ...models.vae import model_file_name
    from ...weight_sets import weight_set_for, weights_dir

    apply_weights_argument(args)
    weight_set = weight_set_for(args.image)  # --weights, or in auto mode the set trained for this image's kind
    loaded = load_image(args.image, slice_index=args.slice, key=args.key)
    model = load_generative_model(args.model, weights_dir(model_file_name(args.model), weight_set))
    size = model.config.image_size
    if loaded.image.shape != (size, size):
        loaded = load_image(args.image, slice_index=args.slice, size=size, key=args.key)
    if not (0 <= row < size and 0 <= col < size):
        raise ValueError(f"pixel ({row}, {col}) is outside the {size}x{size} image")
    start = time.perf_counter()
    with torch.no_grad():
        x = torch.from_numpy(loaded.image)[None, None]
        z = model.encode(x)[0]
        cholesky = model.decode_cholesky(z)
    encoded = time.perf_counter()
    values = cholesky.correlation_row(row, col) if args.kind == "correlation" else cholesky.covariance_row(row, col)
    seconds = time.perf_counter() - encoded
    if args.out:
        with atomic_path(args.out, suffix=".npy") as tmp:
            np.save(tmp, values.astype(np.float32))
    if args.png:
        shown = values if args.kind == "correlation" else values / max(np.abs(values).max(), 1e-30)
        save_correlation_png(shown, args.png, (row, col), f"{args.kind} row at ({row}, {col}), {args.model}")
    summary = {
        "model": args.model, "weights": weight_set.name, "kind": args.kind, "pixel": [row, col],
        "value_at_pixel": float(values[row, col]),
        "min": float(values.min()), "max": float(values.max()), "seconds": round(seconds, 5),
        "encode_seconds": round(encoded - start, 5), "out": args.out, "png": args.png,
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"{args.kind} row at ({row}, {col}) [{args.model}]: value at pixel {summary['value_at_pixel']:.4g}, "
              f"range [{summary['min']:.3g}, {summary['max']:.3g}], {1000 * seconds:.1f} ms")
    return 0
