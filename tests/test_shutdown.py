"""Closing the window mid-run (issue 13): the real ``genreg_viewer.gui.app.main()`` runs in a subprocess with a
long reconstruction in flight; closing the window must cancel it and end the process within 5 s. A second case
makes the worker's operation ignore cancellation (a stuck iteration): the process must still exit in time."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest

pytest_plugins = ["gui_helpers"]  # the window and errors fixtures

pytestmark = pytest.mark.slow  # the desktop app closed mid-run

#: started with ``python -c``; argv[1]: the method, argv[2]: "stuck" to make the worker ignore cancellation.
#: It closes the window one second after the run started and prints the time of the close.
CHILD = textwrap.dedent("""
    import sys, time
    from PyQt6.QtCore import QTimer
    from PyQt6.QtWidgets import QApplication

    from genreg_viewer.application import jobs
    from genreg_viewer.gui import app as app_module
    from genreg_viewer.gui.main_window import MainWindow

    method, mode = sys.argv[1], sys.argv[2]
    if mode == "stuck":  # one operation that never looks at the cancel flag
        def run_method(*args, **kwargs):
            time.sleep(120)
        jobs.run_method = run_method

    qapp = QApplication(sys.argv[:1])
    state = {"window": None, "started": None, "deadline": time.monotonic() + 60}

    def tick():
        window = state["window"] or next((w for w in qapp.topLevelWidgets() if isinstance(w, MainWindow)), None)
        if window is None or not window.isVisible():
            QTimer.singleShot(50, tick)
            return
        if state["window"] is None:
            state["window"] = window
            window.queue.jobStarted.connect(lambda *args: state.update(started=time.monotonic()))
            assert window.method_panel.select_method(method), method
            window.method_panel.iterations_spin.setValue(1_000_000)
            window.method_panel.run()
        # one second into the run: past the set-up (a model loaded), inside the iterations
        in_flight = window.queue.current is not None and time.monotonic() > (state["started"] or 1e300) + 1
        if in_flight or time.monotonic() > state["deadline"]:
            print("CLOSE", repr(time.time()), "in_flight" if in_flight else "not_started", flush=True)
            window.close()
        else:
            QTimer.singleShot(50, tick)

    QTimer.singleShot(0, tick)
    code = app_module.main([])
    print("EXIT", code, flush=True)
""")


def run_and_close(tmp_path, method: str, mode: str) -> tuple[float, str, str]:
    """Start the app, let ``method`` run, close the window; the seconds from the close to the process's exit."""
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "cfg"),
               GENREG_THREADS="1")
    process = subprocess.Popen([sys.executable, "-c", CHILD, method, mode], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env)
    closed_at = None
    try:
        for line in process.stdout:  # the close time arrives before the process can end
            if line.startswith("CLOSE"):
                closed_at = float(line.split()[1])
                assert line.split()[2] == "in_flight", "the run never started"
                break
        assert closed_at is not None, process.stderr.read()
        try:
            process.wait(timeout=10)
            ended_at = time.time()
        except subprocess.TimeoutExpired:
            ended_at = float("inf")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    rest, errors = process.stdout.read(), process.stderr.read()
    return ended_at - closed_at, rest, errors


@pytest.mark.parametrize("method", ["dip", "mean+covar"])
def test_closing_mid_run_exits(tmp_path, method):
    seconds, out, err = run_and_close(tmp_path, method, "run")
    assert seconds < 5, f"exit took {seconds:.1f} s after the close\n{err}"
    assert "EXIT 0" in out, err
    assert "Traceback" not in err, err


def test_closing_with_a_stuck_worker_exits(tmp_path):
    seconds, out, err = run_and_close(tmp_path, "tv", "stuck")
    assert seconds < 5, f"exit took {seconds:.1f} s after the close\n{err}"
    assert "not waiting for the background work still running (reconstruction)" in err
    assert "Traceback" not in err, err


def test_late_worker_signals_after_close_are_ignored(qtbot, window, errors):
    """The cancelled run still reports its last state after the close; nothing may reach the closed window."""
    finished = []
    window.queue.jobFinished.connect(lambda *args: finished.append(args))
    window.state.result_added.connect(lambda record: finished.append(record))
    assert window.method_panel.select_method("tv")
    window.method_panel.iterations_spin.setValue(1_000_000)
    window.method_panel.run()
    qtbot.waitUntil(lambda: window.queue.current is not None, timeout=30_000)
    window.close()
    assert window.queue.closed and window.covariance.worker.closed and window.sweep.worker.closed
    qtbot.wait(300)  # the worker's late finished signal is delivered (and dropped) here
    assert finished == [] and errors == [] and window.state.results == []
    window.method_panel.run()  # a closed queue takes no new job
    assert not window.queue.busy
