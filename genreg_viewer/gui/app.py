"""``genreg-viewer [FILE]``: start the desktop application.

Without ``FILE`` the window opens on the bundled sample slice (or the knee phantom), ready to press Run.
``FILE`` may be a fastMRI ``.h5`` volume, an image, a ``.npy`` array or a saved session (file or folder).

Closing the window cancels the running work and quits. A worker thread still inside one long operation
(loading a model, one iteration of a slow method) after :data:`EXIT_WAIT_MS` does not keep the process alive: its
result is not needed, so the process exits without waiting for it (``os._exit`` after saving the settings).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

#: after the event loop ends, how long to wait for worker threads before exiting without them
logger = logging.getLogger(__name__)

EXIT_WAIT_MS = 1000


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="genreg-viewer", description=__doc__.splitlines()[0].split(": ", 1)[-1])
    parser.add_argument("file", nargs="?", help="image, fastMRI .h5 volume, .npy array or saved session to open")
    parser.add_argument("--slice", type=int, default=None, help="slice of a volume (default: the centre slice)")
    parser.add_argument("--theme", choices=("system", "light", "dark"), default=None,
                        help="colour theme (default: the last choice, else the system's)")
    parser.add_argument("--weights", default=None, metavar="SET",
                        help="trained weights: auto (default: real-knee for scans you open, phantom for phantoms), "
                             "phantom, real-knee, or a folder of weights")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.weights:
        from ..weight_sets import WeightSetError, use_weight_set

        try:
            use_weight_set(args.weights)
        except WeightSetError as exc:
            parser.error(str(exc))
    from PyQt6.QtCore import QCoreApplication, Qt

    from .main_window import MainWindow
    from .qt_typed import ensure_qapp
    from .theme import theme_manager
    from .workers import running_threads, wait_for_threads

    QCoreApplication.setOrganizationName("genreg-viewer")
    QCoreApplication.setApplicationName("genreg-viewer")
    app = ensure_qapp(sys.argv[:1])
    app.setApplicationDisplayName("genreg-viewer")
    themes = theme_manager()  # Fusion style and palette before any widget exists
    window = MainWindow(open_default=args.file is None)
    themes.set_mode(args.theme or str(window.settings.value("theme", "system")))
    if args.file is not None and not window.open_path(args.file, args.slice):
        window.open_default_image()
    # PyQt6's stubs leave out connect()'s connection-type argument
    window.closed.connect(app.quit, Qt.ConnectionType.QueuedConnection)  # type: ignore[call-arg]
    window.show()
    code = app.exec()
    if not wait_for_threads(EXIT_WAIT_MS):
        logger.warning("genreg-viewer: not waiting for the background work still running (%s)",
                       ", ".join(running_threads()))
        window.settings.sync()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # a QThread still running at interpreter exit would abort the process
    return code


if __name__ == "__main__":
    sys.exit(main())
