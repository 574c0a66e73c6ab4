"""``genreg train flow``: train the normalising-flow prior of ``flow-prior`` / ``latent-vi``.

Example (the bundled weights, see ``resources/weights/FLOW.md``)::

    genreg train flow --images 2000 --minutes 12 --threads 1

Writes ``resources/weights/flow.{safetensors,json}`` unless ``--out STEM`` says otherwise.
"""

from __future__ import annotations

import argparse
import sys

import torch


def _hidden(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(part) for part in text.replace(" ", "").split(",") if part)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--hidden must be comma-separated integers, got {text!r}") from None
    if not widths or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"--hidden must be positive integers, got {text!r}")
    return widths


def register(subparsers) -> None:
    from ..models.flow import FlowConfig
    from .flow import FlowTrainingSettings

    config, settings = FlowConfig(), FlowTrainingSettings()
    p = subparsers.add_parser(
        "flow", help="multi-scale affine-coupling flow prior (Asim et al. 2020) by exact likelihood",
        description="Train a RealNVP/Glow-style flow on synthetic knee phantoms by maximum likelihood (dequantised, "
                    "bits/dim); writes STEM.safetensors and STEM.json (default resources/weights/flow).",
    )
    p.add_argument("--images", type=int, default=settings.images, help=f"training phantoms (default {settings.images})")
    p.add_argument("--held-out", type=int, default=settings.held_out,
                   help=f"held-out phantoms for the final bits/dim (default {settings.held_out})")
    p.add_argument("--steps", type=int, default=settings.steps, help=f"optimiser steps (default {settings.steps})")
    p.add_argument("--minutes", type=float, default=None, help="stop after this many minutes (wall clock)")
    p.add_argument("--batch", type=int, default=settings.batch, help=f"batch size (default {settings.batch})")
    p.add_argument("--lr", type=float, default=settings.learning_rate,
                   help=f"peak Adam learning rate (default {settings.learning_rate:g})")
    p.add_argument("--seed", type=int, default=settings.seed, help="seed of initialisation, batches and noise")
    p.add_argument("--size", type=int, default=config.image_size, help=f"image size (default {config.image_size})")
    p.add_argument("--hidden", type=_hidden, default=config.hidden,
                   help="coupling-network width of each level, one number per level "
                        f"(default {','.join(map(str, config.hidden))})")
    p.add_argument("--steps-per-level", type=int, default=config.steps_per_level,
                   help=f"flow steps per level (default {config.steps_per_level})")
    p.add_argument("--scale-bound", type=float, default=config.scale_bound,
                   help=f"bound on the coupling log-scales (default {config.scale_bound:g})")
    p.add_argument("--no-flips", action="store_true", help="no random left-right flips")
    p.add_argument("--out", default=None, metavar="STEM", help="output stem (default resources/weights/flow)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.set_defaults(func=run_flow)


def run_flow(args) -> int:
    from ..device import resolve_device
    from ..models.flow import FlowConfig
    from .flow import FlowTrainingSettings, train_flow

    if args.threads is not None:
        if args.threads < 1:
            raise ValueError("--threads must be at least 1")
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    config = FlowConfig(image_size=args.size, hidden=args.hidden, steps_per_level=args.steps_per_level,
                        scale_bound=args.scale_bound)
    settings = FlowTrainingSettings(
        images=args.images, held_out=args.held_out, batch=args.batch, steps=args.steps, minutes=args.minutes,
        learning_rate=args.lr, seed=args.seed, flips=not args.no_flips,
    )
    for path in train_flow(config, settings, args.out, device, argv=sys.argv[1:]):
        print(f"wrote {path}")
    return 0
