"""Shared pieces of the GUI tests: the main-window fixtures and synthetic mouse input.

Test modules load the fixtures with ``pytest_plugins = ["gui_helpers"]``; every wait in the GUI tests uses
:data:`WAIT_MS`, so a broken worker fails a test instead of hanging it.
"""

from __future__ import annotations

import pytest
from PyQt6.QtCore import QPointF, QSettings, Qt
from PyQt6.QtGui import QMouseEvent
from PyQt6.QtWidgets import QApplication, QMessageBox

from genreg_viewer.gui.main_window import MainWindow

WAIT_MS = 60_000


@pytest.fixture
def errors(monkeypatch) -> list[tuple[str, str]]:
    """Error dialogs are recorded as ``(title, text)`` instead of shown (they would block the test)."""
    shown: list[tuple[str, str]] = []

    def critical(parent, title, text, *args, **kwargs):
        shown.append((title, text))
        return QMessageBox.StandardButton.Ok

    monkeypatch.setattr(QMessageBox, "critical", staticmethod(critical))
    return shown


@pytest.fixture
def window(qtbot, tmp_path, errors):
    """A shown main window on the default sample slice, with its own settings file."""
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    win = MainWindow(settings=settings)
    win.replace_questions = []  # what the window asked before a new image replaced runs (always answered yes)
    win.confirm_replace_runs = lambda what, count: win.replace_questions.append((what, count)) or True
    qtbot.addWidget(win)
    win.resize(1400, 900)
    win.show()
    qtbot.waitExposed(win)
    yield win
    win.close()


def view_position(view, row: float, col: float):
    """Viewport coordinates of the centre of pixel ``(row, col)`` of an ``ImageView``."""
    scene = view.view_box.mapViewToScene(QPointF(col + 0.5, row + 0.5))
    return view.graphics.mapFromScene(scene)


def send_mouse(widget, kind, pos, buttons) -> None:
    """Send one mouse press, move or release at viewport position ``pos`` with ``buttons`` held."""
    button = Qt.MouseButton.LeftButton if kind != QMouseEvent.Type.MouseMove else Qt.MouseButton.NoButton
    global_pos = widget.mapToGlobal(QPointF(pos))
    event = QMouseEvent(kind, QPointF(pos), global_pos, button, buttons, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, event)


def run_and_wait(qtbot, window, count: int, errors: list) -> None:
    """Press Run and wait until ``count`` runs have finished (failing at once if an error dialog appears)."""
    window.method_panel.run()
    qtbot.waitUntil(lambda: errors or (len(window.state.results) >= count and not window.queue.busy),
                    timeout=WAIT_MS)
    assert errors == []
