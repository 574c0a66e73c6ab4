"""Render screenshots of every panel: ``python -m genreg_viewer.gui.screenshots [OUT_DIR] [--theme T]``.

Opens the window on the default slice, runs the fast methods that are available, and saves
``measurement.png``, ``live.png``, ``comparison.png``, ``covariance.png``, ``uncertainty.png`` and ``sweep.png``
(default folder ``docs/screenshots``). ``--platform offscreen`` (default) draws without a display;
``--platform xcb`` draws a real X11 window (``scripts/screenshots.sh --x11`` starts a virtual X server, installing
Debian's Xvfb when it is missing). ``--check-layout`` also checks every tab with
:func:`~genreg_viewer.gui.layout_check.layout_problems` and exits 1 when a control is cut, squeezed or overlapped;
run it with ``QT_SCALE_FACTOR=2`` for a high-DPI screen.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

#: the runs shown (the comparison shows the measurement's zero-filled adjoint by itself)
FAST_METHODS = ("lsq", "tv", "mean+diagonal", "mean+covar")


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
    parser.add_argument("--platform", choices=("offscreen", "xcb"), default=None,
                        help="Qt platform: offscreen (default) or xcb, a real X11 window (needs DISPLAY)")
    parser.add_argument("--check-layout", action="store_true",
                        help="check every tab for cut, squeezed or overlapping controls; exit 1 if any")
    args = parser.parse_args(argv)
    platform = args.platform or os.environ.get("QT_QPA_PLATFORM") or "offscreen"
    if platform == "xcb" and not os.environ.get("DISPLAY"):
        parser.error("--platform xcb needs an X display (DISPLAY is not set); scripts/screenshots.sh --x11 starts "
                     "a virtual one")
    os.environ["QT_QPA_PLATFORM"] = platform
    from PyQt6.QtCore import QSettings

    from .export import save_widget_png
    from .layout_check import layout_problems
    from .main_window import MainWindow
    from .qt_typed import ensure_qapp
    from .theme import theme_manager

    app = ensure_qapp(sys.argv[:1])
    theme_manager().set_mode(args.theme)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    settings_dir = tempfile.TemporaryDirectory()  # fresh settings: no recent files or saved geometry
    settings = QSettings(str(Path(settings_dir.name) / "settings.ini"), QSettings.Format.IniFormat)
    window = MainWindow(settings=settings)
    width, height = (int(v) for v in args.size.lower().split("x"))
    window.resize(width, height)
    problems: list[str] = []

    def save(name: str) -> None:
        wait_until(app, lambda: False, 0.3)
        if args.check_layout:
            tab = window.tabs.tabText(window.tabs.currentIndex())
            problems.extend(f"{tab}: {problem}" for problem in layout_problems(window))
        save_widget_png(window, out / f"{name}{args.suffix}.png")

    window.show()
    window.tabs.setCurrentWidget(window.measurement_view)
    save("measurement")

    panel = window.method_panel
    for name in FAST_METHODS:
        if name in panel.methods and panel.methods[name].available()[0]:
            panel.select_method(name)
            panel.run()
    wait_until(app, lambda: not window.queue.busy, 600)
    window.tabs.setCurrentWidget(window.live_view)
    save("live")

    window.tabs.setCurrentWidget(window.comparison)
    window.comparison.inset_check.setChecked(True)
    save("comparison")

    window.tabs.setCurrentWidget(window.covariance)
    cov = window.covariance
    if wait_until(app, lambda: cov.prepared is not None or cov.model_error is not None, 120) and cov.prepared:
        cov.request_pixel(64, 60)
        wait_until(app, lambda: cov.pixel is not None and not cov.inspector.row_busy, 60)
        wait_until(app, lambda: False, 2.0)
    save("covariance")

    window.tabs.setCurrentWidget(window.uncertainty)
    uncertainty = window.uncertainty  # the mean+covar run: a pixel read out, the flip-book at its third sample
    uncertainty.keep_pixel(64, 60)
    uncertainty.sample_slider.setValue(min(3, uncertainty.sample_slider.maximum()))
    save("uncertainty")

    window.tabs.setCurrentWidget(window.sweep)
    if args.sweep:
        window.sweep.values_edit.setText("5, 25, 45")
        window.sweep.start()
        wait_until(app, lambda: not window.sweep.running, 600)
    save("sweep")
    size = window.size()
    window.close()
    settings_dir.cleanup()
    print(f"screenshots written to {out} ({app.platformName()}, window {size.width()}x{size.height()}, "
          f"scale {window.devicePixelRatio():g})")
    if args.check_layout:
        for problem in problems:
            print(f"layout: {problem}")
        print(f"layout: {'intact' if not problems else f'{len(problems)} problem(s)'} on every tab")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
