"""Keeping work safe and readable in the real window: a new image asks before it replaces runs and can be undone,
"Clear runs" can be undone, the live view says when a run is over, and the window never widens itself."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PyQt6.QtCore import QSettings, Qt  # noqa: E402
from PyQt6.QtWidgets import QToolButton  # noqa: E402

from genreg_viewer.gui.main_window import MainWindow  # noqa: E402

pytest.register_assert_rewrite("gui_helpers")
from gui_helpers import run_and_wait  # noqa: E402

pytest_plugins = ["gui_helpers"]


def toolbar_button(panel, text: str) -> QToolButton:
    return next(b for b in panel.findChildren(QToolButton) if b.text() == text)


def adjoint_run(window, qtbot, errors, count: int = 1) -> None:
    assert window.method_panel.select_method("adjoint")
    for _ in range(count):
        run_and_wait(qtbot, window, len(window.state.results) + 1, errors)


def test_a_new_image_asks_first_and_undo_brings_the_runs_back(window, qtbot, errors, tmp_path):
    adjoint_run(window, qtbot, errors, 2)
    before = window.state.image.copy()
    runs = [r.run_id for r in window.state.results]
    other = tmp_path / "other.npy"
    np.save(other, np.eye(128, dtype=np.float32))

    window.confirm_replace_runs = lambda what, count: window.replace_questions.append((what, count)) and False
    assert not window.open_path(other)  # declined: nothing changes
    assert window.replace_questions == [("other.npy", 2)]
    np.testing.assert_array_equal(window.state.image, before)
    assert [r.run_id for r in window.state.results] == runs

    window.confirm_replace_runs = lambda what, count: True
    assert window.open_path(other)
    assert window.state.results == [] and len(window.comparison.tiles) == 2  # truth and adjoint
    assert window.undo_action.isEnabled() and "opening other.npy" in window.undo_action.text()
    window.undo_action.trigger()  # Edit ▸ Undo
    np.testing.assert_array_equal(window.state.image, before)
    assert [r.run_id for r in window.state.results] == runs
    assert set(window.comparison.tiles) == {"truth", "adjoint"} | {f"run:{i}" for i in runs}
    assert not window.undo_action.isEnabled()
    assert errors == []


def test_clear_runs_can_be_undone(window, qtbot, errors):
    adjoint_run(window, qtbot, errors, 2)
    window.tabs.setCurrentWidget(window.comparison)
    runs = list(window.state.results)
    qtbot.mouseClick(toolbar_button(window.comparison, "Clear runs"), Qt.MouseButton.LeftButton)
    assert window.state.results == [] and "run:1" not in window.comparison.tiles
    assert "Undo" in window.statusBar().currentMessage()
    window.undo_action.trigger()
    assert window.state.results == runs
    assert {f"run:{r.run_id}" for r in runs} <= set(window.comparison.tiles)
    assert errors == []


def test_live_view_says_when_the_run_is_over(window, qtbot, errors):
    adjoint_run(window, qtbot, errors)
    live = window.live_view
    assert live.image_view.title_label.text() == "Final image"
    np.testing.assert_array_equal(live.image_view.image(), window.state.results[0].image)
    assert "finished" in live.header.text()


def test_window_never_grows_by_itself(qtbot, tmp_path, errors):
    """Long run titles elide (full text in the tooltip) instead of widening the window, at 1280x800."""
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    window = MainWindow(settings=settings)
    window.confirm_replace_runs = lambda what, count: True
    qtbot.addWidget(window)
    window.resize(1280, 800)
    window.show()
    qtbot.waitExposed(window)
    assert window.minimumSizeHint().width() <= 1280 and window.minimumSizeHint().height() <= 800
    assert (window.width(), window.height()) == (1280, 800)
    long_title = "A very long method title " * 12
    window.live_view.header.setText(long_title)
    qtbot.wait(50)
    assert window.width() == 1280 and window.minimumSizeHint().width() <= 1280
    assert window.live_view.header.is_elided() and window.live_view.header.toolTip() == long_title
    window.close()


def test_opening_says_what_loading_changed(window, tmp_path, errors):
    """A colour, non-square picture is converted to grey and cropped; the status bar says so."""
    from PIL import Image

    rgb = np.zeros((90, 120, 3), np.uint8)
    rgb[..., 0] = np.linspace(0, 250, 120).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "colour.png")
    assert window.open_path(tmp_path / "colour.png")
    message = window.statusBar().currentMessage()
    assert "converted from colour (RGB) to grey" in message
    assert "centre-cropped from 120×90 to 90×90" in message and "resized to 128×128" in message
    assert errors == []


def test_messages_speak_of_the_app_not_the_command_line(window, tmp_path, errors):
    import h5py

    with h5py.File(tmp_path / "vector.h5", "w") as f:
        f["timestamps"] = np.arange(5.0)
    assert not window.open_path(tmp_path / "vector.h5")
    assert len(errors) == 1 and "--key" not in errors[0][1] and "timestamps" in errors[0][1]
