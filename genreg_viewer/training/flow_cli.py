"""``genreg train flow``: train the normalising-flow prior of ``flow-prior`` / ``latent-vi``.

Example (the bundled weights, see ``resources/weights/FLOW.md``)::

    genreg train flow --images 2000 --minutes 12 --threads 1
    genreg train flow --data train.h5 --held-out val.h5 --augment --minutes 12 --out DIR/flow

Writes ``resources/weights/flow.{safetensors,json}`` unless ``--out STEM`` says otherwise.
"""

from __future__ import annotations

import sys

from .cli_arguments import (
    add_device_arguments,
    add_step_budget_arguments,
    device_from_arguments,
    int_list,
    report_written,
    step_budget_values,
)


def register(subparsers) -> None:
    from ..models.flow import FlowConfig
    from .flow import FlowTrainingSettings

    config, settings = FlowConfig(), FlowTrainingSettings()
    p = subparsers.add_parser(
        "flow", help="multi-scale affine-coupling flow prior (Asim et al. 2020) by exact likelihood",
        description="Train a RealNVP/Glow-style flow by maximum likelihood (dequantised, bits/dim) on synthetic knee "
                    "phantoms (default) or a slice set (--data); writes STEM.safetensors and STEM.json (default "
                    "resources/weights/flow).",
    )
    add_step_budget_arguments(p, settings, out="resources/weights/flow")
    p.add_argument("--size", type=int, default=config.image_size, help=f"image size (default {config.image_size})")
    p.add_argument("--hidden", type=lambda text: int_list(text, "--hidden"), default=config.hidden,
                   help="coupling-network width of each level, one number per level "
                        f"(default {','.join(map(str, config.hidden))})")
    p.add_argument("--steps-per-level", type=int, default=config.steps_per_level,
                   help=f"flow steps per level (default {config.steps_per_level})")
    p.add_argument("--scale-bound", type=float, default=config.scale_bound,
                   help=f"bound on the coupling log-scales (default {config.scale_bound:g})")
    p.add_argument("--no-flips", action="store_true", help="no random left-right flips")
    add_device_arguments(p, "cpu")
    p.set_defaults(func=run_flow)


def run_flow(args) -> int:
    from ..models.flow import FlowConfig
    from .flow import FlowTrainingSettings, train_flow

    device = device_from_arguments(args)
    config = FlowConfig(image_size=args.size, hidden=args.hidden, steps_per_level=args.steps_per_level,
                        scale_bound=args.scale_bound)
    settings = FlowTrainingSettings(flips=not args.no_flips, **step_budget_values(args))
    out = args.out
    if out is None:  # the flow of the weight set chosen with --weights or GENREG_WEIGHTS (or its fallback)
        from ..models.flow import bundled_flow_stem
        from ..weight_sets import active_weight_set

        out = bundled_flow_stem(active_weight_set())
    written = train_flow(config, settings, out, device, argv=sys.argv[1:], resume=args.resume,
                         keep_checkpoint=args.keep_checkpoint)
    return report_written(written)
