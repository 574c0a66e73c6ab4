"""``genreg-viewer [FILE]``: start the desktop application."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from PyQt6.QtWidgets import QApplication, QLabel, QMainWindow

    argv = sys.argv if argv is None else argv
    app = QApplication.instance() or QApplication(argv)
    window = QMainWindow()
    window.setWindowTitle("genreg-viewer")
    window.setCentralWidget(QLabel("genreg-viewer"))
    window.resize(800, 600)
    window.show()
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
