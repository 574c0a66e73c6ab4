"""``genreg-viewer [FILE]``: start the desktop application.

Without ``FILE`` the window opens on the bundled sample slice (or the knee phantom), ready to press Run.
``FILE`` may be a fastMRI ``.h5`` volume, an image, a ``.npy`` array or a saved session (file or folder).
"""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="genreg-viewer", description=__doc__.splitlines()[0].split(": ", 1)[-1])
    parser.add_argument("file", nargs="?", help="image, fastMRI .h5 volume, .npy array or saved session to open")
    parser.add_argument("--slice", type=int, default=None, help="slice of a volume (default: the centre slice)")
    parser.add_argument("--theme", choices=("system", "light", "dark"), default=None,
                        help="colour theme (default: the last choice, else the system's)")
    parser.add_argument("--weights", default=None, metavar="SET",
                        help="trained weights: phantom (default), real-knee, or a folder of weights")
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
    from PyQt6.QtCore import QCoreApplication
    from PyQt6.QtWidgets import QApplication

    from .main_window import MainWindow
    from .theme import theme_manager

    QCoreApplication.setOrganizationName("genreg-viewer")
    QCoreApplication.setApplicationName("genreg-viewer")
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationDisplayName("genreg-viewer")
    themes = theme_manager()  # Fusion style and palette before any widget exists
    window = MainWindow(open_default=args.file is None)
    themes.set_mode(args.theme or str(window.settings.value("theme", "system")))
    if args.file is not None and not window.open_path(args.file, args.slice):
        window.open_default_image()
    window.show()
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
