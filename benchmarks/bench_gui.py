"""How responsive the desktop application stays: event-loop stalls during runs and covariance-click latency.

Drives the real main window (offscreen unless ``QT_QPA_PLATFORM`` says otherwise) the way a person would:

1. a 10 ms ``QTimer`` heartbeat runs on the GUI thread the whole time; a *stall* is how much later than its 10 ms
   period a beat came (``gap - 10 ms``): the time the event loop could not react to input or paint. For the longest
   stall the table also gives the CPU time the GUI thread itself used in it: far less than the stall means the
   thread was waiting (for a core on a busy machine, or for the GIL), not working;
2. the Run button is clicked for TV and then for mean+covar (the paper's method, with its posterior std map);
   each run is followed for ``--settle`` seconds after it ends (the comparison and covariance panels take the new
   result then);
3. right after mean+covar ends the Covariance tab is opened and a pixel clicked: *first click* is the time from
   the mouse release to the correlation row of that pixel being on screen; *repeat click* the same for a second
   pixel (median of ``--repeats`` clicks).

Prints a table per phase, and as its last line the JSON
``{"max_stall_ms": ..., "first_click_ms": ..., "repeat_click_ms": ...}``.

    python benchmarks/bench_gui.py                 # 1280x800, TV and mean+covar
    python benchmarks/bench_gui.py --size 1600x1000 --methods tv
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PyQt6.QtCore import QElapsedTimer, QEventLoop, QPointF, QSettings, Qt, QTimer  # noqa: E402
from PyQt6.QtGui import QMouseEvent  # noqa: E402
from PyQt6.QtWidgets import QApplication  # noqa: E402

HEARTBEAT_MS = 10


class Heartbeat:
    """A 10 ms precise timer on the GUI thread; records how late each beat comes."""

    def __init__(self):
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(HEARTBEAT_MS)
        self.timer.timeout.connect(self._beat)
        self.clock = QElapsedTimer()
        self.last: float | None = None
        self.last_cpu = 0.0
        self.stalls: list[float] = []
        self.busy: list[float] = []  #: CPU time the GUI thread itself used during each gap (ms)

    def start(self) -> None:
        self.stalls, self.busy = [], []
        self.clock.start()
        self.last = None
        self.timer.start()

    def stop(self) -> list[float]:
        self.timer.stop()
        return self.stalls

    def _beat(self) -> None:
        now = self.clock.nsecsElapsed() / 1e6
        cpu = time.thread_time() * 1000
        if self.last is not None:
            self.stalls.append(max(0.0, now - self.last - HEARTBEAT_MS))
            self.busy.append(cpu - self.last_cpu)
        self.last, self.last_cpu = now, cpu


def wait(seconds: float, until=None) -> bool:
    """Run the event loop for ``seconds`` (or until ``until()`` is true); True when ``until`` became true."""
    deadline = time.perf_counter() + seconds
    loop = QEventLoop()
    while time.perf_counter() < deadline:
        if until is not None and until():
            return True
        QTimer.singleShot(2, loop.quit)
        loop.exec()
    return until is not None and bool(until())


def click(view, row: int, col: int) -> None:
    """Press and release the left button over pixel ``(row, col)`` of an ``ImageView``."""
    scene = view.view_box.mapViewToScene(QPointF(col + 0.5, row + 0.5))
    pos = QPointF(view.graphics.mapFromScene(scene))
    viewport = view.graphics.viewport()
    global_pos = QPointF(viewport.mapToGlobal(pos.toPoint()))
    left = Qt.MouseButton.LeftButton
    for kind, buttons in ((QMouseEvent.Type.MouseButtonPress, left),
                          (QMouseEvent.Type.MouseButtonRelease, Qt.MouseButton.NoButton)):
        event = QMouseEvent(kind, pos, global_pos, left, buttons, Qt.KeyboardModifier.NoModifier)
        QApplication.sendEvent(viewport, event)


def summarise(heartbeat: Heartbeat) -> dict:
    stalls = heartbeat.stalls
    ordered = sorted(stalls) or [0.0]
    worst = int(np.argmax(stalls)) if stalls else None
    return {"beats": len(stalls), "max_ms": ordered[-1], "p99_ms": ordered[int(0.99 * (len(ordered) - 1))],
            "over_50": sum(s > 50 for s in stalls), "over_16": sum(s > 16 for s in stalls),
            "worst_busy_ms": heartbeat.busy[worst] if worst is not None else 0.0}


def run_method(window, heartbeat: Heartbeat, name: str, settle: float, timeout: float) -> dict:
    """Click Run for ``name`` and follow the run plus ``settle`` seconds; returns the stall summary."""
    panel = window.method_panel
    if not panel.select_method(name):
        raise SystemExit(f"no method {name!r}")
    before = len(window.state.results)
    heartbeat.start()
    start = time.perf_counter()
    panel.run_controls.run_button.click()
    if not wait(timeout, lambda: len(window.state.results) > before and not window.queue.busy):
        raise SystemExit(f"{name} did not finish within {timeout} s")
    seconds = time.perf_counter() - start
    wait(settle)
    heartbeat.stop()
    summary = summarise(heartbeat)
    summary.update(phase=f"run {name}", seconds=seconds)
    return summary


def covariance_clicks(window, heartbeat: Heartbeat, repeats: int, timeout: float) -> tuple[float, float, dict]:
    """Open the Covariance tab right after a run and click pixels; (first, repeat median) latency in ms."""
    panel = window.covariance
    shown: list[float] = []
    panel.correlation_view.image_item.sigImageChanged.connect(lambda: shown.append(time.perf_counter()))
    heartbeat.start()
    window.tabs.setCurrentWidget(panel)
    wait(0.05)
    latencies = []
    pixels = [(64, 64)] + [(40 + 7 * i % 50, 30 + 11 * i % 70) for i in range(1, repeats + 1)]
    for row, col in pixels:
        shown.clear()
        start = time.perf_counter()
        click(panel.source_view, row, col)
        if not wait(timeout, lambda pixel=(row, col): bool(shown) and panel.pixel == pixel):
            raise SystemExit(f"the correlation row of {(row, col)} did not appear within {timeout} s "
                             f"(status: {panel.status_label.text()})")
        latencies.append(1000 * (shown[-1] - start))
        wait(0.1)
    heartbeat.stop()
    summary = summarise(heartbeat)
    summary.update(phase="covariance clicks", seconds=0.0)
    return latencies[0], statistics.median(latencies[1:]), summary


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1280x800", help="window size WIDTHxHEIGHT (default 1280x800)")
    parser.add_argument("--methods", nargs="+", default=["tv", "mean+covar"],
                        help="methods to run, in order (the covariance clicks follow the last one)")
    parser.add_argument("--settle", type=float, default=1.0, help="seconds followed after each run ends")
    parser.add_argument("--repeats", type=int, default=5, help="repeat clicks")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    torch.set_num_threads(args.threads)

    from genreg_viewer.gui.main_window import MainWindow
    from genreg_viewer.gui.theme import theme_manager

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("genreg-viewer-bench")
    theme_manager()
    with tempfile.TemporaryDirectory() as folder:
        settings = QSettings(str(Path(folder) / "settings.ini"), QSettings.Format.IniFormat)
        window = MainWindow(settings=settings)
        window.resize(width, height)
        window.show()
        wait(1.0)
        heartbeat = Heartbeat()
        rows = [run_method(window, heartbeat, name, args.settle, args.timeout) for name in args.methods]
        first, repeat, clicks = covariance_clicks(window, heartbeat, args.repeats, args.timeout)
        rows.append(clicks)
        window.close()
        wait(0.2)
    print(f"window {window.width()}x{window.height()}, heartbeat {HEARTBEAT_MS} ms, torch threads {args.threads}")
    print("| phase | seconds | beats | max stall (ms) | GUI thread busy in it (ms) | p99 (ms) | stalls > 16 ms | "
          "stalls > 50 ms |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['phase']} | {row['seconds']:.1f} | {row['beats']} | {row['max_ms']:.1f} | "
              f"{row['worst_busy_ms']:.1f} | {row['p99_ms']:.1f} | {row['over_16']} | {row['over_50']} |")
    print(f"first click {first:.1f} ms, repeat click (median of {args.repeats}) {repeat:.1f} ms")
    result = {"max_stall_ms": round(max(r["max_ms"] for r in rows), 1), "first_click_ms": round(first, 1),
              "repeat_click_ms": round(repeat, 1)}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
