"""``genreg phantom --count N --seed S --out DIR [--size 128] [--grid grid.png]``: write synthetic knee phantoms.

Phantom ``i`` uses seed ``S + i`` and is written as ``DIR/knee_phantom_<seed>.npy`` (float32 HxW in [0, 1]) and
``DIR/knee_phantom_<seed>.png`` (8-bit grey); ``--grid`` also saves all of them tiled in one PNG.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

from ...data import limits
from ...fileio import atomic_write


def register(subparsers) -> None:
    p = subparsers.add_parser("phantom", help="generate synthetic coronal PD knee phantoms (.npy + .png)")
    p.add_argument("--count", type=int, required=True, help="number of phantoms")
    p.add_argument("--seed", type=int, default=0, help="seed of the first phantom; phantom i uses seed + i")
    p.add_argument("--out", required=True, help="output folder (created if missing)")
    p.add_argument("--size", type=int, default=128, help="image height = width in pixels (default 128)")
    p.add_argument("--grid", default=None, help="also save all phantoms tiled in one PNG")
    p.add_argument("--columns", type=int, default=None, help="grid columns (default: about the square root)")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(func=run)


def phantom_name(seed: int) -> str:
    """File stem of the phantom drawn with ``seed``: ``knee_phantom_000`` style."""
    return f"knee_phantom_{seed:03d}"


def _save_npy(path: Path, image: np.ndarray) -> None:
    np.save(path, image)


def _save_png(image: np.ndarray, path: Path) -> None:
    from PIL import Image

    from ...data.phantom import to_uint8

    atomic_write(path, lambda tmp: Image.fromarray(to_uint8(image)).save(tmp, format="PNG"))


def run(args) -> int:
    from tqdm import tqdm

    from ...data.phantom import knee_phantom, phantom_grid

    if args.count < 1:
        raise ValueError(f"--count must be at least 1, got {args.count}")
    if args.seed < 0:
        raise ValueError(f"--seed must be non-negative, got {args.seed}")
    if not 16 <= args.size <= 2048:
        raise ValueError(f"--size must be between 16 and 2048 pixels, got {args.size}")
    if args.grid is not None and Path(args.grid).suffix.lower() != ".png":
        raise ValueError(f"--grid must name a .png file, got {args.grid!r}")
    if args.grid is not None:  # the grid holds every phantom in memory
        limits.check_images(args.count, (args.size, args.size), "--grid")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out must be a folder, but {out} is a file")
    out.mkdir(parents=True, exist_ok=True)

    images = []
    for seed in tqdm(range(args.seed, args.seed + args.count), desc="phantoms", unit="img", disable=args.json):
        image = knee_phantom(seed, args.size)
        stem = phantom_name(seed)
        atomic_write(out / f"{stem}.npy", functools.partial(_save_npy, image=image))
        _save_png(image, out / f"{stem}.png")
        if args.grid is not None:
            images.append(image)
    if args.grid is not None:
        columns = args.columns or int(np.ceil(np.sqrt(args.count)))
        _save_png(phantom_grid(np.stack(images), columns=max(1, columns)), Path(args.grid))

    info = {
        "count": args.count,
        "seeds": [args.seed, args.seed + args.count - 1],
        "size": args.size,
        "out": str(out),
        "grid": args.grid,
    }
    if args.json:
        print(json.dumps(info))
    else:
        grid = f" and grid {args.grid}" if args.grid else ""
        print(f"{args.count} phantoms (seeds {args.seed}..{args.seed + args.count - 1}, {args.size}x{args.size}) "
              f"-> {out}{grid}")
    return 0
