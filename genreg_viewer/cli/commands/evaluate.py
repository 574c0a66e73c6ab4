"""``genreg evaluate DATA --methods tv,mean+covar --mask radial:25 --noise 0.05 --out results.csv``.

Runs registry methods batched over a slice set (or ``phantom:N[:SEED]``), one CSV row per image and method, written
as it goes and resumable, then prints a summary table (mean ± std, paired PSNR difference to ``--reference`` with
its standard error, wins). Under ``torchrun --nproc_per_node N --no-python genreg evaluate ...`` (or ``python -m
torch.distributed.run --nproc_per_node N -m genreg_viewer.cli.main evaluate ...``) every process takes a shard of
the batches and rank 0 merges. Conventions: :mod:`genreg_viewer.evaluation.evaluate`. ``--save-reconstructions DIR``
also writes the reconstructions as fastMRI-style volumes, ``DIR/<method>/<volume>.h5`` and the ground truth in
``DIR/target/`` (:mod:`genreg_viewer.evaluation.reconstructions`).
"""

from __future__ import annotations

import json

import torch

from ...defaults import DEFAULT_MASK_SPEC, DEFAULT_NOISE_SIGMA
from ..common import add_weights_argument


def register(subparsers) -> None:
    p = subparsers.add_parser("evaluate", help="evaluate methods over a slice set: CSV rows and a summary table")
    p.add_argument("data", help="slice set .h5 (genreg dataset build) or phantom:N[:SEED]")
    p.add_argument("--methods", required=True, action="append", metavar="M1,M2,...",
                   help="methods to run, comma-separated (see 'genreg methods')")
    p.add_argument("--mask", default=DEFAULT_MASK_SPEC, metavar="SPEC",
                   help=f"sampling mask (default {DEFAULT_MASK_SPEC})")
    p.add_argument("--noise", type=float, default=DEFAULT_NOISE_SIGMA, metavar="SIGMA",
                   help=f"k-space noise std (default {DEFAULT_NOISE_SIGMA})")
    p.add_argument("--seed", type=int, default=0,
                   help="noise seed: image i's noise comes from SEED * 2**32 + i (default 0)")
    p.add_argument("--images", type=int, default=None, metavar="N", help="N images evenly spaced through DATA")
    p.add_argument("--batch", type=int, default=16, metavar="B", help="images per method call (default 16)")
    p.add_argument("--param", action="append", default=[], metavar="[METHOD:]NAME=VALUE",
                   help="method parameter, repeatable; without METHOD: every method that has NAME")
    p.add_argument("--std-maps", action="store_true",
                   help="compute the posterior std maps (default: posterior_samples=0, they do not change the image)")
    p.add_argument("--reference", default="tv", help="method the paired differences are taken against (default tv)")
    add_weights_argument(p)
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (under torchrun: cuda:LOCAL_RANK)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--out", required=True, metavar="CSV", help="results CSV (rows already there are kept and skipped)")
    p.add_argument("--save-reconstructions", default=None, metavar="DIR",
                   help="also write fastMRI-style volumes: DIR/<method>/<volume>.h5 (dataset 'reconstruction', "
                        "slices x H x W) and the ground truth DIR/target/<volume>.h5; one setting per DIR")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from ...evaluation.evaluate import (
        EvaluationConfig,
        parse_method_list,
        parse_method_params,
        run_evaluation,
        shard_from_environment,
        summary_table,
    )

    if args.threads is not None:
        from ...device import check_thread_count

        torch.set_num_threads(check_thread_count(args.threads))
    from ...weight_sets import active_weight_set, is_auto, use_weight_set

    if args.weights:  # before the methods' parameters are checked: tuned defaults come from the set
        use_weight_set(args.weights)
    # the evaluation is given its set: --weights or GENREG_WEIGHTS, else (None) auto, resolved for the data's kind
    weights = args.weights or (None if is_auto() else str(active_weight_set().folder))
    methods = parse_method_list(args.methods)
    config = EvaluationConfig(
        data=args.data, methods=methods, out=args.out, mask=args.mask, sigma=args.noise, seed=args.seed,
        images=args.images, batch=args.batch, device=args.device, weights=weights,
        params=parse_method_params(args.param, methods), std_maps=args.std_maps, reference=args.reference,
        save_reconstructions=args.save_reconstructions,
    )
    shard = shard_from_environment()
    result = run_evaluation(config, shard, progress=not (args.quiet or args.json))
    if result.summary is None:  # a rank other than 0: rank 0 reports
        return 0
    if args.json:
        print(json.dumps(result.summary))
    else:
        print(summary_table(result.summary, f"{args.mask}, sigma {args.noise}"))
        print(f"{len(result.rows)} rows of this setting in {args.out} ({result.computed} computed now, "
              f"{result.skipped} already there)")
        if args.save_reconstructions is not None:
            targets = sum(path.parent.name == "target" for path in result.reconstructions)
            print(f"{len(result.reconstructions) - targets} reconstruction volume(s) and {targets} target volume(s) "
                  f"in {args.save_reconstructions} (<method>/<volume>.h5, target/<volume>.h5)")
    return 0
