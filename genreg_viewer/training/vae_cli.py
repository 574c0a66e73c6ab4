"""``genreg train vae`` (stage 1) and ``genreg train covariance`` (stage 2) of the structured-covariance VAE.

Examples (the bundled weights; see ``resources/weights/README.md``)::

    genreg train vae phantom:4000 --out runs/vae
    genreg train covariance phantom:4000 --vae runs/vae --kind diagonal --out runs/vae
    genreg train covariance phantom:4000 --vae runs/vae --kind covar --out runs/vae

DATA is ``phantom:N[:SEED]`` (synthetic knee phantoms) or a slice set ``.h5`` from ``genreg dataset build``.
Both run unchanged under ``torchrun --nproc_per_node N -m genreg_viewer.cli.main train ...`` (one process per GPU;
``--batch-size`` is the global batch).
"""

from __future__ import annotations

import argparse
import sys

from ..models.vae import (
    PAPER_COARSE_CHANNELS,
    PAPER_DECODER_WIDTHS,
    PAPER_DROPOUT,
    PAPER_PATCH,
    PAPER_WIDTHS,
    SLIM_PATCH,
    SLIM_WIDTHS,
)
from .cli_arguments import add_device_arguments, device_from_arguments, int_list


def _widths(text: str) -> tuple[int, ...]:
    named = {"slim": SLIM_WIDTHS, "paper": PAPER_WIDTHS}
    return named[text] if text in named else int_list(text, "--widths", "'slim', 'paper' or ")


def _common(parser: argparse.ArgumentParser, epochs: int, batch_size: int, lr: float) -> None:
    from .vae import DEFAULT_NOISE_STD

    parser.add_argument("data", metavar="DATA", help="phantom:N[:SEED] or a slice-set .h5 file")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (weights, checkpoint, loss plot)")
    parser.add_argument("--held-out", default=None, metavar="DATA",
                        help="held-out images (default: phantom:128:1000000 for phantom data, else the last volumes)")
    parser.add_argument("--epochs", type=int, default=epochs, help=f"epochs (default {epochs})")
    parser.add_argument("--minutes", type=float, default=None,
                        help="wall-clock budget: after the first epoch, run only the epochs that fit (the "
                             "learning-rate schedule follows the shortened run)")
    parser.add_argument("--batch-size", type=int, default=batch_size,
                        help=f"global batch size, split over the processes under torchrun (default {batch_size})")
    parser.add_argument("--lr", type=float, default=lr, help=f"peak Adam learning rate (default {lr:g})")
    parser.add_argument("--seed", type=int, default=0, help="seed of initialisation, batch order and noise")
    parser.add_argument("--noise-std", type=float, default=DEFAULT_NOISE_STD,
                        help=f"std of the Gaussian noise added to training images (default {DEFAULT_NOISE_STD})")
    parser.add_argument("--no-flips", action="store_true", help="no random left-right flips")
    parser.add_argument("--augment", action="store_true",
                        help="random small rotation/zoom/shift and contrast (gamma) per image (for real slice sets)")
    parser.add_argument("--intensity-curves", action="store_true",
                        help="random monotone intensity curves and smooth bias fields per image (contrast-agnostic "
                             "training, for priors used on contrasts and scanners not in DATA)")
    parser.add_argument("--nonmonotone-curves", type=float, default=0.0, metavar="P",
                        help="with --intensity-curves: the fraction P of the curves that are non-monotone (air stays "
                             "dark; bright tissue may turn dark and grey bright, as fat saturation or T2 weighting "
                             "do; default 0)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT's checkpoint of this stage")
    add_device_arguments(parser, "auto")


def register(subparsers) -> None:
    from .vae import DEFAULT_STAGE1_SIGMA

    p = subparsers.add_parser("vae", help="stage 1: VAE encoder + mean decoder (Duff et al. 2023)",
                              description="Stage 1: train encoder and mean decoder with a fixed-variance Gaussian "
                                          "likelihood + KL; writes OUT/vae_identity.{safetensors,json}.")
    _common(p, epochs=24, batch_size=16, lr=2e-3)
    p.add_argument("--widths", type=_widths, default=SLIM_WIDTHS,
                   help=f"channels per resolution level: 'slim' {','.join(map(str, SLIM_WIDTHS))} (default), "
                        f"'paper' (the paper's layout: encoder {','.join(map(str, PAPER_WIDTHS))}, decoder from "
                        f"8x8x{PAPER_COARSE_CHANNELS} through {','.join(map(str, PAPER_DECODER_WIDTHS))}, patch "
                        f"{PAPER_PATCH}, dropout {PAPER_DROPOUT}), or a comma list")
    p.add_argument("--patch", type=int, choices=(1, 2, 4), default=None,
                   help=f"stem stride and sub-pixel output factor (default {SLIM_PATCH}; {PAPER_PATCH} with "
                        "--widths paper): 1 = full-resolution stem and output")
    p.add_argument("--no-batch-norm", action="store_true", help="no batch normalisation in the residual blocks")
    p.add_argument("--latent-dim", type=int, default=100, help="latent dimension (default 100; with --latent-channels "
                   "it follows from the grid)")
    p.add_argument("--latent-channels", type=int, default=0, metavar="C",
                   help="a spatial latent grid of C channels per cell of the coarsest feature map (image_size / "
                        "(patch * 2^levels) a side; fully convolutional, so the mean follows anatomy it has not seen) "
                        "instead of a latent vector (default 0: a vector of --latent-dim)")
    p.add_argument("--coarse-blocks", type=int, default=0, metavar="N",
                   help="residual blocks at the coarsest resolution in encoder and decoders (default 0)")
    p.add_argument("--dropout", type=float, default=None, help="dropout probability (default: the config default)")
    p.add_argument("--sigma", type=float, default=DEFAULT_STAGE1_SIGMA,
                   help=f"fixed likelihood std s0 of stage 1 (default {DEFAULT_STAGE1_SIGMA})")
    p.set_defaults(func=run_vae)

    p = subparsers.add_parser("covariance", help="stage 2: covariance decoder (diagonal or covar) of a trained VAE",
                              description="Stage 2: with the stage-1 networks frozen, train the covariance decoder "
                                          "by the exact Gaussian nll; writes OUT/vae_<kind>.{safetensors,json}.")
    _common(p, epochs=10, batch_size=16, lr=5e-4)
    p.add_argument("--vae", required=True, metavar="DIR_OR_STEM", help="stage-1 folder (with vae_identity.*) or stem")
    p.add_argument("--kind", choices=("covar", "diagonal"), default="covar", help="covariance kind (default covar)")
    p.add_argument("--neighbourhood", type=int, choices=(3, 5), default=3, help="3 (3x3, default) or 5 (5x5)")
    p.add_argument("--l1", type=float, default=0.0, help="L1 penalty weight on the off-diagonal weights (default 0)")
    p.add_argument("--latent", choices=("sample", "mean"), default="sample",
                   help="z ~ q(z|x) per batch as in the paper's eq. 8 (default), or z = mu(x)")
    p.set_defaults(func=run_covariance)


def _loop_arguments(args) -> dict:
    return dict(data=args.data, held_out=args.held_out, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                seed=args.seed, noise_std=args.noise_std, flips=not args.no_flips, augment=args.augment,
                intensity_curves=args.intensity_curves, nonmonotone_curves=args.nonmonotone_curves,
                minutes=args.minutes)


def _report(stem) -> int:
    """``wrote STEM.safetensors and STEM.json`` (rank 0 only under ``torchrun``); the exit status 0."""
    from .distributed import is_main_process

    if is_main_process():
        print(f"wrote {stem}.safetensors and {stem}.json")  # noqa: T201 - the command-line output
    return 0


def run_vae(args) -> int:
    from ..fileio import check_output_folder
    from ..models.vae import VAEConfig
    from .vae import VAETrainingSettings, train_vae

    check_output_folder(args.out)
    device = device_from_arguments(args)
    paper = args.widths == PAPER_WIDTHS
    extra: dict = {"decoder_widths": PAPER_DECODER_WIDTHS, "coarse_channels": PAPER_COARSE_CHANNELS,
                   "dropout": PAPER_DROPOUT} if paper else {}
    if args.dropout is not None:
        extra["dropout"] = args.dropout
    patch = args.patch if args.patch is not None else (PAPER_PATCH if paper else SLIM_PATCH)
    latent_dim = (VAEConfig.grid_latent_dim(args.latent_channels, 128, patch, len(args.widths))
                  if args.latent_channels > 0 else args.latent_dim)
    config = VAEConfig(widths=args.widths, latent_dim=latent_dim, patch=patch, latent_channels=args.latent_channels,
                       coarse_blocks=args.coarse_blocks, batch_norm=not args.no_batch_norm,
                       covariance_kind="identity", **extra)
    settings = VAETrainingSettings(**_loop_arguments(args), sigma=args.sigma)
    stem = train_vae(config, settings, args.out, device=device, resume=args.resume, argv=sys.argv[1:])
    return _report(stem)


def run_covariance(args) -> int:
    from ..fileio import check_output_folder
    from .vae import CovarianceTrainingSettings, train_covariance

    check_output_folder(args.out)
    device = device_from_arguments(args)
    settings = CovarianceTrainingSettings(**_loop_arguments(args), l1=args.l1, latent=args.latent)
    stem = train_covariance(args.vae, args.kind, settings, args.out, neighbourhood=args.neighbourhood, device=device,
                            resume=args.resume, argv=sys.argv[1:])
    return _report(stem)
