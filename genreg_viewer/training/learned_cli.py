"""``genreg train denoiser | varnet | edip``: train the networks of the learned baselines.

Examples::

    genreg train denoiser --minutes 6
    genreg train varnet --mask radial:25 --noise 0.05 --minutes 6
    genreg train edip --minutes 5

Weights go to ``resources/weights/`` under the names the methods look for, unless ``--out STEM`` says otherwise.
"""

from __future__ import annotations

import argparse

import torch


def _common(parser: argparse.ArgumentParser, steps: int, batch: int, lr: float) -> None:
    parser.add_argument("--steps", type=int, default=steps, help=f"optimiser steps (default {steps})")
    parser.add_argument("--minutes", type=float, default=None, help="stop after this many minutes (wall clock)")
    parser.add_argument("--batch", type=int, default=batch, help=f"batch size (default {batch})")
    parser.add_argument("--lr", type=float, default=lr, help=f"Adam learning rate (default {lr:g})")
    parser.add_argument("--images", type=int, default=400, help="training phantoms (seeds 0..N-1, default 400)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="output stem (writes STEM.safetensors and STEM.json)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")


def register(subparsers) -> None:
    p = subparsers.add_parser("denoiser", help="RealSN-DnCNN denoiser for pnp-admm (Ryu et al. 2019)")
    _common(p, steps=2000, batch=16, lr=3e-3)
    p.add_argument("--layers", type=int, default=6, help="convolution layers (default 6)")
    p.add_argument("--channels", type=int, default=32, help="feature channels (default 32)")
    p.add_argument("--sigma-min", type=float, default=0.005, help="smallest training noise level (default 0.005)")
    p.add_argument("--sigma-max", type=float, default=0.15, help="largest training noise level (default 0.15)")
    p.add_argument("--patch", type=int, default=40, help="training patch size (default 40)")
    p.set_defaults(func=run_denoiser)

    p = subparsers.add_parser("varnet", help="variational network for one mask and noise level (Hammernik et al. 2018)")
    _common(p, steps=300, batch=2, lr=5e-3)
    p.add_argument("--mask", default="radial:25", help="mask spec (default radial:25)")
    p.add_argument("--noise", type=float, default=0.05, help="k-space noise sigma (default 0.05)")
    p.add_argument("--stages", type=int, default=10)
    p.set_defaults(func=run_varnet)

    p = subparsers.add_parser("edip", help="U-Net warm start for educated DIP (Barbano et al. 2021)")
    _common(p, steps=600, batch=8, lr=2e-3)
    p.set_defaults(func=run_edip)


def _prepare(args) -> torch.device:
    from ..device import resolve_device

    if args.threads is not None:
        if args.threads < 1:
            raise ValueError("--threads must be at least 1")
        torch.set_num_threads(args.threads)
    return resolve_device(args.device)


def _report(paths) -> int:
    for path in paths:
        print(f"wrote {path}")
    return 0


def run_denoiser(args) -> int:
    from .denoiser import DEFAULT_STEM, DenoiserTrainingConfig, train_denoiser

    device = _prepare(args)
    config = DenoiserTrainingConfig(
        layers=args.layers, channels=args.channels, sigma_min=args.sigma_min, sigma_max=args.sigma_max,
        images=args.images, patch=args.patch, batch=args.batch, steps=args.steps, minutes=args.minutes,
        learning_rate=args.lr, seed=args.seed,
    )
    return _report(train_denoiser(config, args.out or DEFAULT_STEM, device))


def run_varnet(args) -> int:
    from .varnet import VarnetTrainingConfig, train_varnet

    device = _prepare(args)
    config = VarnetTrainingConfig(
        mask=args.mask, noise=args.noise, stages=args.stages, images=args.images, batch=args.batch,
        steps=args.steps, minutes=args.minutes, learning_rate=args.lr, seed=args.seed,
    )
    return _report(train_varnet(config, args.out, device))


def run_edip(args) -> int:
    from .edip import DEFAULT_STEM, EdipTrainingConfig, train_edip

    device = _prepare(args)
    config = EdipTrainingConfig(
        images=args.images, batch=args.batch, steps=args.steps, minutes=args.minutes, learning_rate=args.lr,
        seed=args.seed,
    )
    return _report(train_edip(config, args.out or DEFAULT_STEM, device))
