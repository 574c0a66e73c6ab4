"""``genreg train denoiser | varnet | edip``: train the networks of the learned baselines.

Examples::

    genreg train denoiser --minutes 6
    genreg train varnet --mask radial:25 --noise 0.05 --minutes 6
    genreg train edip --minutes 5
    genreg train varnet --data train.h5 --held-out val.h5 --augment --mask radial:25 --noise 0.05 --minutes 6 \
        --out DIR/varnet-radial25-sigma0.05

Weights go to ``resources/weights/`` under the names the methods look for, unless ``--out STEM`` says otherwise.
Training data: synthetic knee phantoms by default (``--images N`` = ``--data phantom:N``), or a slice set ``.h5``
from ``genreg dataset build`` (``--data``, with ``--held-out`` and ``--augment``; see
:func:`genreg_viewer.training.common.load_training_data`).
"""

from __future__ import annotations

from .cli_arguments import (
    add_device_arguments,
    checkpoint_values,
    add_step_budget_arguments,
    device_from_arguments,
    report_written,
    step_budget_values,
)


def register(subparsers) -> None:
    from .denoiser import DenoiserTrainingConfig
    from .edip import EdipTrainingConfig
    from .varnet import VarnetTrainingConfig

    denoiser = DenoiserTrainingConfig()
    p = subparsers.add_parser("denoiser", help="RealSN-DnCNN denoiser for pnp-admm (Ryu et al. 2019)")
    add_step_budget_arguments(p, denoiser, out="resources/weights/dncnn")
    p.add_argument("--layers", type=int, default=denoiser.layers,
                   help=f"convolution layers (default {denoiser.layers})")
    p.add_argument("--channels", type=int, default=denoiser.channels,
                   help=f"feature channels (default {denoiser.channels})")
    p.add_argument("--sigma-min", type=float, default=denoiser.sigma_min,
                   help=f"smallest training noise level (default {denoiser.sigma_min:g})")
    p.add_argument("--sigma-max", type=float, default=denoiser.sigma_max,
                   help=f"largest training noise level (default {denoiser.sigma_max:g})")
    p.add_argument("--patch", type=int, default=denoiser.patch, help=f"training patch size (default {denoiser.patch})")
    add_device_arguments(p, "cpu")
    p.set_defaults(func=run_denoiser)

    varnet = VarnetTrainingConfig()
    p = subparsers.add_parser("varnet", help="variational network for one mask and noise level (Hammernik et al. 2018)")
    add_step_budget_arguments(p, varnet, out="resources/weights/varnet-SETTING, e.g. varnet-radial25-sigma0.05")
    p.add_argument("--mask", default=varnet.mask, help=f"mask spec (default {varnet.mask})")
    p.add_argument("--noise", type=float, default=varnet.noise, help=f"k-space noise sigma (default {varnet.noise:g})")
    p.add_argument("--stages", type=int, default=varnet.stages, help=f"stages (default {varnet.stages})")
    add_device_arguments(p, "cpu")
    p.set_defaults(func=run_varnet)

    p = subparsers.add_parser("edip", help="U-Net warm start for educated DIP (Barbano et al. 2021)")
    add_step_budget_arguments(p, EdipTrainingConfig(), out="resources/weights/edip")
    add_device_arguments(p, "cpu")
    p.set_defaults(func=run_edip)


def run_denoiser(args) -> int:
    from .denoiser import DEFAULT_STEM, DenoiserTrainingConfig, train_denoiser

    device = device_from_arguments(args)
    config = DenoiserTrainingConfig(layers=args.layers, channels=args.channels, sigma_min=args.sigma_min,
                                    sigma_max=args.sigma_max, patch=args.patch, **step_budget_values(args))
    return report_written(train_denoiser(config, args.out or DEFAULT_STEM, device, **checkpoint_values(args)))


def run_varnet(args) -> int:
    from .varnet import VarnetTrainingConfig, train_varnet

    device = device_from_arguments(args)
    config = VarnetTrainingConfig(mask=args.mask, noise=args.noise, stages=args.stages, **step_budget_values(args))
    return report_written(train_varnet(config, args.out, device, **checkpoint_values(args)))


def run_edip(args) -> int:
    from .edip import DEFAULT_STEM, EdipTrainingConfig, train_edip

    device = device_from_arguments(args)
    config = EdipTrainingConfig(**step_budget_values(args))
    return report_written(train_edip(config, args.out or DEFAULT_STEM, device, **checkpoint_values(args)))
