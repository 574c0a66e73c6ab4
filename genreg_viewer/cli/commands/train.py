"""``genreg train KIND ...``: train the networks behind the learned methods.

Each trainer module (listed in :data:`TRAINER_MODULES`) defines ``register(subparsers)`` and adds one or more kinds
(``vae``, ``covariance``, ``denoiser``, ...) exactly like the top-level sub-commands do.
"""

from __future__ import annotations

import importlib

#: trainer modules, each adding its own ``genreg train`` kinds
TRAINER_MODULES = [
    "genreg_viewer.training.vae_cli",
    "genreg_viewer.training.learned_cli",
    "genreg_viewer.training.flow_cli",
]


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train a model (see 'genreg train --help')")
    kinds = p.add_subparsers(dest="kind", metavar="KIND")
    for module in TRAINER_MODULES:
        importlib.import_module(module).register(kinds)
    p.set_defaults(func=lambda args: (p.print_help(), 1)[1])
