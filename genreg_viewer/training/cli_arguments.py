"""Command-line pieces shared by the ``genreg train`` kinds: option groups, the device set-up, list parsing."""

from __future__ import annotations

import argparse
from typing import Any, Iterable

import torch

from .common import HELD_OUT_SEED, StepTrainingConfig


def int_list(text: str, option: str, alternatives: str = "") -> tuple[int, ...]:
    """``"16,32,64"`` -> ``(16, 32, 64)``; an ``argparse.ArgumentTypeError`` naming ``option`` (and the
    ``alternatives`` it also accepts, e.g. ``"'slim', 'paper' or "``) unless all entries are positive integers."""
    try:
        values = tuple(int(part) for part in text.replace(" ", "").split(",") if part)
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(
            f"{option} must be {alternatives}comma-separated positive integers, got {text!r}")
    return values


def held_out_argument(text: str) -> int | str:
    """``--held-out``: ``N`` (N held-out phantoms, seeds from :data:`HELD_OUT_SEED`) as an int, else the DATA spec."""
    return int(text) if text.strip().isdigit() else text


def add_data_arguments(parser: argparse.ArgumentParser, defaults: StepTrainingConfig) -> None:
    """``--data --images --held-out --augment``: what a trainer learns from and is scored on, the same for every
    ``genreg train`` kind of a step-budget trainer (:func:`genreg_viewer.training.common.load_training_data`)."""
    images, held = defaults.images, defaults.DEFAULT_HELD_OUT
    parser.add_argument("--data", default=None, metavar="DATA",
                        help="training images: phantom:N[:SEED] (synthetic knee phantoms, seeds SEED..SEED+N-1) or a "
                             f"slice-set .h5 from 'genreg dataset build' (default phantom:{images})")
    parser.add_argument("--images", type=int, default=None, metavar="N",
                        help=f"training phantoms, seeds 0..N-1: short for --data phantom:N (default {images})")
    parser.add_argument("--held-out", type=held_out_argument, default=None, metavar="DATA",
                        help=f"held-out images for the final scores: N (N phantoms, seeds from {HELD_OUT_SEED}), "
                             "phantom:N[:SEED] or a slice-set .h5 (default: "
                             f"{held} held-out phantoms for phantom data, the slice set's last whole volumes "
                             "(about 5%% of its slices) otherwise)")
    parser.add_argument("--augment", action="store_true",
                        help="also a small random rotation/zoom/shift and contrast (gamma) change per training image, "
                             "on top of the random flips (for small real slice sets)")


def add_step_budget_arguments(parser: argparse.ArgumentParser, defaults: StepTrainingConfig, out: str) -> None:
    """``--steps --minutes --batch --lr`` and the data options of :func:`add_data_arguments`, ``--seed --out`` of a
    step-budget trainer, with the ``defaults`` of its config; ``out`` describes the default output stem.
    :func:`step_budget_values` reads them back."""
    steps, batch, lr, seed = defaults.steps, defaults.batch, defaults.learning_rate, defaults.seed
    parser.add_argument("--steps", type=int, default=steps, help=f"optimiser steps (default {steps})")
    parser.add_argument("--minutes", type=float, default=defaults.minutes,
                        help="stop after this many minutes (wall clock)")
    parser.add_argument("--batch", type=int, default=batch, help=f"batch size (default {batch})")
    parser.add_argument("--lr", type=float, default=lr, help=f"peak Adam learning rate (default {lr:g})")
    add_data_arguments(parser, defaults)
    parser.add_argument("--seed", type=int, default=seed,
                        help=f"seed of initialisation, batches and noise (default {seed})")
    parser.add_argument("--out", default=None, metavar="STEM",
                        help=f"output stem: writes STEM.safetensors and STEM.json (default {out})")
    parser.add_argument("--checkpoint-every", type=int, default=defaults.checkpoint_every, metavar="N",
                        help=f"write STEM.checkpoint.pt every N steps (default {defaults.checkpoint_every}); it is "
                             "removed once the weights are written, unless --keep-checkpoint")
    parser.add_argument("--resume", action="store_true",
                        help="continue from STEM.checkpoint.pt (same options; --steps may grow)")
    parser.add_argument("--keep-checkpoint", action="store_true",
                        help="keep STEM.checkpoint.pt after the weights are written (to extend the run later)")


def step_budget_values(args: argparse.Namespace) -> dict[str, Any]:
    """The :class:`StepTrainingConfig` fields given by the options of :func:`add_step_budget_arguments` (those left
    out keep the config's defaults); ``ValueError`` for ``--images`` together with ``--data``."""
    if args.images is not None and args.data is not None:
        raise ValueError("--images N is short for --data phantom:N: give one of them, not both")
    values = dict(batch=args.batch, steps=args.steps, minutes=args.minutes, learning_rate=args.lr, seed=args.seed,
                  data=args.data, held_out=args.held_out, augment=args.augment,
                  checkpoint_every=args.checkpoint_every)
    if args.images is not None:
        values["images"] = args.images
    return values


def add_device_arguments(parser: argparse.ArgumentParser, default: str) -> None:
    """``--device`` (default ``default``) and ``--threads``; read them back with :func:`device_from_arguments`."""
    parser.add_argument("--device", default=default, help=f"cpu, cuda, cuda:N, mps or auto (default {default})")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")


def device_from_arguments(args: argparse.Namespace) -> torch.device:
    """Apply ``--threads`` to torch and resolve ``--device`` (``auto``: CUDA when present)."""
    from ..device import resolve_device

    if args.threads is not None:
        from ..device import check_thread_count

        torch.set_num_threads(check_thread_count(args.threads))
    return resolve_device(args.device)


def checkpoint_values(args: argparse.Namespace) -> dict[str, bool]:
    """``resume`` and ``keep_checkpoint`` of a step-budget trainer's function, from the command line."""
    return {"resume": args.resume, "keep_checkpoint": args.keep_checkpoint}


def report_written(paths: Iterable[object]) -> int:
    """Print ``wrote PATH`` for each written file (rank 0 only under ``torchrun``); the command's exit status (0)."""
    from .distributed import is_main_process

    if is_main_process():
        for path in paths:
            print(f"wrote {path}")  # noqa: T201 - the trainers' command-line output
    return 0
