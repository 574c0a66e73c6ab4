"""``genreg``: command-line entry point.

Each sub-command lives in :mod:`genreg_viewer.cli.commands` as a module with ``register(subparsers)`` that adds its
parser and sets ``func(args) -> int``. Known user errors are printed as one clear line (exit status 2), never as a
traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .. import __version__
from .errors import USER_ERRORS

#: sub-command modules, in the order ``genreg --help`` lists them
COMMAND_MODULES = [
    "info",
    "mask",
    "phantom",
    "dataset",
    "methods",
    "weights",
    "recon",
    "covariance",
    "train",
    "evaluate",
    "calibrate",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="genreg",
        description="Compressed-sensing MRI reconstruction with generative regularisers.",
    )
    parser.add_argument("--version", action="version", version=f"genreg-viewer {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__package__}.commands.{name}").register(subparsers)
    return parser


def _interrupted(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    # SIGTERM and SIGHUP end a command like Ctrl+C: temporaries are removed and partial outputs are never left
    import signal
    import threading

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for name in ("SIGTERM", "SIGHUP"):
            if hasattr(signal, name):
                previous[name] = signal.signal(getattr(signal, name), _interrupted)
    try:
        return _run(parser, args)
    finally:
        for name, handler in previous.items():
            signal.signal(getattr(signal, name), handler)


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from ..device import configure_threads
    from ..weight_sets import WeightSetError, active_weight_set, environment_error, is_auto, use_weight_set

    try:
        problem = environment_error()  # before anything reads GENREG_WEIGHTS
        if problem and not getattr(args, "weights", None):  # --weights overrides the environment
            raise WeightSetError(problem)
        configure_threads()  # one slice's default (GENREG_THREADS wins); commands that know the size refine it
        before = None if is_auto() else active_weight_set()  # None restores auto mode
        try:
            return int(args.func(args) or 0)
        finally:  # --weights applies to this command only (main() may be called repeatedly in one process)
            use_weight_set(before)
    except USER_ERRORS as exc:
        print(f"genreg {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
