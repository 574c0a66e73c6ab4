"""Render screenshots of every panel offscreen: ``python -m genreg_viewer.gui.screenshots [OUT_DIR] [--theme T]``.

Opens the window on the default slice, runs the fast methods that are available, and saves
``measurement.png``, ``live.png``, ``comparison.png``, ``covariance.png`` and ``sweep.png``
(default folder ``docs/screenshots``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

FAST_METHODS = ("adjoint", "lsq", "tv", "mean+covar")


def wait_until(app, condition, timeout: float = 120.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        app.processEvents()
        if condition():
            return True
        time.sleep(0.01)
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default="docs/screenshots")
    parser.add_argument("--theme", choices=("light", "dark"), default="light")
    parser.add_argument("--sweep", action="store_true", help="also run a small sweep (slower)")
    parser.add_argument("--size", default="1500x900", help="window size WIDTHxHEIGHT (default 1500x900)")
    parser.add_argument("--suffix", default="", help="added to every file name, e.g. -1280x800")
    args = parser.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PyQt6.QtCore import QSettings
    from PyQt6.QtWidgets import QApplication

    from .export import save_widget_png
    from .main_window import MainWindow
    from .theme import theme_manager

    app = QApplication.instance() or QApplication(sys.argv[:1])
    theme_manager().set_mode(args.theme)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    settings_dir = tempfile.TemporaryDirectory()  # fresh settings: no recent files or saved geometry
    settings = QSettings(str(Path(settings_dir.name) / "settings.ini"), QSettings.Format.IniFormat)
    window = MainWindow(settings=settings)
    width, height = (int(v) for v in args.size.lower().split("x"))
    window.resize(width, height)
    window.show()
    window.tabs.setCurrentWidget(window.measurement_view)
    wait_until(app, lambda: False, 0.3)
    save_widget_png(window, out / f"measurement{args.suffix}.png")

    panel = window.method_panel
    for name in FAST_METHODS:
        if name in panel.methods and panel.methods[name].available()[0]:
            panel.select_method(name)
            panel.run()
    wait_until(app, lambda: not window.queue.busy, 600)
    window.tabs.setCurrentWidget(window.live_view)
    wait_until(app, lambda: False, 0.3)
    save_widget_png(window, out / f"live{args.suffix}.png")

    window.tabs.setCurrentWidget(window.comparison)
    window.comparison.inset_check.setChecked(True)
    wait_until(app, lambda: False, 0.3)
    save_widget_png(window, out / f"comparison{args.suffix}.png")

    window.tabs.setCurrentWidget(window.covariance)
    cov = window.covariance
    if wait_until(app, lambda: cov.prepared is not None or cov.model_error is not None, 120) and cov.prepared:
        cov.request_pixel(64, 60)
        wait_until(app, lambda: cov.pixel is not None and not cov._row_busy, 60)
        wait_until(app, lambda: False, 2.0)
    wait_until(app, lambda: False, 0.3)
    save_widget_png(window, out / f"covariance{args.suffix}.png")

    window.tabs.setCurrentWidget(window.sweep)
    if args.sweep:
        window.sweep.values_edit.setText("5, 25, 45")
        window.sweep.start()
        wait_until(app, lambda: not window.sweep.running, 600)
    wait_until(app, lambda: False, 0.3)
    save_widget_png(window, out / f"sweep{args.suffix}.png")
    window.close()
    settings_dir.cleanup()
    print(f"screenshots written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
