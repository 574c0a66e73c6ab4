"""The desktop application, driven offscreen with pytest-qt: loading, sampling, runs, cancellation, comparison,
export, sessions and error dialogs. Every wait has a timeout, so a broken worker fails instead of hanging."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PyQt6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl  # noqa: E402
from PyQt6.QtGui import QDropEvent, QMouseEvent, QWheelEvent  # noqa: E402
from PyQt6.QtWidgets import QApplication, QFileDialog, QInputDialog  # noqa: E402

from genreg_viewer import metrics  # noqa: E402
from genreg_viewer.application import bundles, sessions  # noqa: E402
from genreg_viewer.data.loading import load_image  # noqa: E402
from genreg_viewer.physics import MRIOperator, cartesian_mask, radial_mask, simulate_measurement  # noqa: E402
from genreg_viewer.recon import Problem, ReconMethod, Step  # noqa: E402

pytest.register_assert_rewrite("gui_helpers")  # its asserts report like a test's (it is imported here first)
from gui_helpers import WAIT_MS, run_and_wait, send_mouse, view_position  # noqa: E402

pytest_plugins = ["gui_helpers"]  # the errors and window fixtures

pytestmark = pytest.mark.slow  # the desktop app driven end to end


class SlowGradientDescent(ReconMethod):
    """Test-only method (not registered): gradient steps on ``1/2 ||A x - y||^2`` with a pause per iteration, so a
    run lasts long enough to be cancelled."""

    name = "test-slow-gd"
    title = "Slow gradient descent (test)"
    default_iterations = 100_000

    def iterate(self, problem: Problem, params, iterations):
        x = problem.zero_filled()
        for iteration in range(1, iterations + 1):
            time.sleep(0.005)
            x = x - 0.5 * (problem.operator.normal_real(x) - problem.zero_filled())
            yield Step(iteration, x, float(problem.operator.data_misfit(x, problem.y).sum()))


def slow_job(window, iterations: int = 100_000):
    """A job for the test-only slow method on the window's current measurement."""
    job = window.method_panel.make_job()
    job.method_instance, job.title, job.params, job.iterations = SlowGradientDescent(), "slow", {}, iterations
    return job


# ----------------------------------------------------------------------------------------------- start-up
def test_opens_on_the_sample_slice_ready_to_run(window):
    state = window.state
    assert state.image is not None and state.image.shape == (128, 128)
    assert state.ready and window.method_panel.run_controls.run_button.isEnabled()
    assert window.method_panel.current_method() is not None
    # the adjoint view shows the zero-filled reconstruction of the default radial mask
    expected = simulate_measurement(state.image, radial_mask(25), state.sigma, state.seed).zero_filled()[0, 0]
    np.testing.assert_allclose(window.measurement_view.adjoint_view.image(), expected.numpy(), atol=1e-6)


ENTRY_POINT_SCRIPT = """
import sys
import numpy as np
from PyQt6.QtCore import QTimer
from PyQt6.QtWidgets import QApplication
from genreg_viewer.gui.app import main
from genreg_viewer.gui.main_window import MainWindow

def report_and_quit():
    try:
        for window in QApplication.topLevelWidgets():
            if isinstance(window, MainWindow) and window.isVisible():
                np.save(sys.argv[2], window.state.image)
                window.close()
    finally:
        QApplication.instance().quit()

app = QApplication(sys.argv[:1])  # main() uses it; the timer needs it
QTimer.singleShot(1000, report_and_quit)
sys.exit(main([sys.argv[1], "--theme", "dark"]))
"""


def test_entry_point_opens_the_file_given(tmp_path):
    """``genreg-viewer FILE`` in a fresh process (leaving its event loop would disturb this test session's)."""
    image = np.tri(128, dtype=np.float32)
    np.save(tmp_path / "triangle.npy", image)
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", XDG_CONFIG_HOME=str(tmp_path / "config"),
               PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    done = subprocess.run([sys.executable, "-c", ENTRY_POINT_SCRIPT, str(tmp_path / "triangle.npy"),
                           str(tmp_path / "shown.npy")], env=env, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr
    np.testing.assert_allclose(np.load(tmp_path / "shown.npy"), image)


# ----------------------------------------------------------------------------------------------- loading
def test_open_npy_and_recent_files(window, tmp_path, errors):
    image = np.linspace(0, 1, 128 * 128, dtype=np.float32).reshape(128, 128)
    path = tmp_path / "ramp.npy"
    np.save(path, image)
    assert window.open_path(path)
    np.testing.assert_allclose(window.state.image, image, atol=1e-6)
    np.testing.assert_allclose(window.measurement_view.truth_view.image(), image, atol=1e-6)
    assert window.recent_files()[0] == str(path.resolve())
    recent = next(a for a in window.recent_menu.actions() if path.name in a.text())
    window.open_default_image()
    recent.trigger()
    np.testing.assert_allclose(window.state.image, image, atol=1e-6)
    assert errors == []


def test_volume_slices_follow_the_slider(window, qtbot, tmp_path):
    volume = np.stack([np.full((64, 64), value, np.float32) for value in (1.0, 2.0, 3.0, 4.0, 5.0)])
    volume[:, 16:48, 16:48] += 1.0
    volume[2, 20:30, 20:30] = 9.0  # only the centre slice has this bright square
    path = tmp_path / "volume.h5"
    with h5py.File(path, "w") as f:
        f["reconstruction_esc"] = volume
    assert window.open_path(path)
    controls = window.sampling
    assert window.state.image_info.num_slices == 5
    assert window.state.image_info.slice_index == 2  # the centre slice by default
    assert controls.slice_row.isVisibleTo(controls) and controls.slice_spin.maximum() == 5
    np.testing.assert_allclose(window.state.image, load_image(path, 2).image)
    controls.slice_spin.setValue(1)  # slices are numbered from 1 in the GUI
    qtbot.waitUntil(lambda: window.state.image_info.slice_index == 0, timeout=5000)
    np.testing.assert_allclose(window.state.image, load_image(path, 0).image)
    assert not np.allclose(window.state.image, load_image(path, 2).image)


def write_custom_volume(path: Path) -> np.ndarray:
    """An HDF5 file with no dataset name the loader knows: two candidate image stacks and a 1-D vector."""
    volume = np.stack([np.full((64, 64), value, np.float32) for value in (1.0, 2.0, 3.0, 4.0, 5.0)])
    volume[:, 16:48, 16:48] += 1.0
    volume[2, 20:30, 20:30] = 9.0
    with h5py.File(path, "w") as f:
        f["scans/magnitude"] = volume
        f["scout"] = np.eye(64, dtype=np.float32)
        f["timestamps"] = np.arange(5.0)
    return volume


def test_hdf5_without_a_known_dataset_asks_which_to_read(window, qtbot, tmp_path, errors):
    path = tmp_path / "custom.h5"
    write_custom_volume(path)
    asked = []

    def choose(file, candidates):
        asked.append((file, tuple(candidates)))
        return "scans/magnitude"

    window.choose_image_key = choose
    assert window.open_path(path)
    assert asked == [(path, ("scans/magnitude", "scout"))]
    info = window.state.image_info
    assert (info.key, info.num_slices, info.slice_index) == ("scans/magnitude", 5, 2)
    np.testing.assert_allclose(window.state.image, load_image(path, 2, key="scans/magnitude").image)
    window.sampling.slice_spin.setValue(1)  # the chosen dataset is kept for other slices, without asking again
    qtbot.waitUntil(lambda: window.state.image_info.slice_index == 0, timeout=5000)
    np.testing.assert_allclose(window.state.image, load_image(path, 0, key="scans/magnitude").image)
    assert len(asked) == 1 and errors == []


def test_cancelling_the_dataset_choice_keeps_the_image(window, tmp_path, errors):
    path = tmp_path / "custom.h5"
    write_custom_volume(path)
    before = window.state.image.copy()
    window.choose_image_key = lambda file, candidates: None
    assert not window.open_path(path)
    np.testing.assert_array_equal(window.state.image, before)
    assert errors == [] and "no dataset chosen" in window.statusBar().currentMessage()
    with h5py.File(tmp_path / "vector.h5", "w") as f:  # nothing to choose from: a plain error
        f["timestamps"] = np.arange(5.0)
    window.choose_image_key = lambda file, candidates: pytest.fail("no candidates, nothing to ask")
    assert not window.open_path(tmp_path / "vector.h5")
    assert len(errors) == 1 and "no image dataset" in errors[0][1]


def test_dataset_choice_uses_a_list_dialog(window, tmp_path, monkeypatch, errors):
    path = tmp_path / "custom.h5"
    write_custom_volume(path)
    offered = []

    def get_item(parent, title, label, items, current=0, editable=True, *args, **kwargs):
        offered.append((title, list(items), editable))
        return "scout", True

    monkeypatch.setattr(QInputDialog, "getItem", staticmethod(get_item))
    assert window.open_path(path)
    assert offered == [("Choose the image dataset of custom.h5", ["scans/magnitude", "scout"], False)]
    assert window.state.image_info.key == "scout" and window.state.image_info.num_slices == 1
    assert errors == []


def test_unreadable_slice_puts_the_slider_back(window, qtbot, tmp_path, errors):
    path = tmp_path / "volume.h5"
    with h5py.File(path, "w") as f:
        f["reconstruction_esc"] = write_custom_volume(tmp_path / "custom.h5")
    assert window.open_path(path)
    controls, shown = window.sampling, window.state.image.copy()
    loads = []
    window.state.image_changed.connect(lambda: loads.append(window.state.image_info.slice_index))
    path.unlink()
    controls.slice_slider.setValue(5)  # the user drags to the last slice of a file that is gone
    qtbot.waitUntil(lambda: len(errors) == 1, timeout=5000)
    assert "Cannot read the slice" in errors[0][0] and "volume.h5" in errors[0][1]
    assert controls.slice_slider.value() == controls.slice_spin.value() == 3  # back on the slice still shown
    assert window.state.image_info.slice_index == 2 and loads == []
    np.testing.assert_array_equal(window.state.image, shown)
    qtbot.wait(400)  # longer than the slice timer: putting the slider back must not request another load
    assert len(errors) == 1


def test_saving_a_mask_with_an_unsupported_suffix_fails_clearly(window, tmp_path, monkeypatch, errors):
    target = tmp_path / "mask.txt"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *args, **kwargs: (str(target), "")))
    window.save_mask_dialog()
    assert len(errors) == 1 and errors[0][0] == "Cannot save" and "use .png or .npy" in errors[0][1]
    assert not target.exists()


def test_corrupt_file_shows_an_error_dialog(window, tmp_path, errors):
    before = window.state.image.copy()
    path = tmp_path / "broken.h5"
    path.write_bytes(b"this is not an HDF5 file")
    assert not window.open_path(path)
    assert len(errors) == 1 and "broken.h5" in errors[0][0]
    assert "Traceback" not in errors[0][1]
    np.testing.assert_array_equal(window.state.image, before)


def test_drop_a_file_opens_it(window, tmp_path):
    image = np.zeros((128, 128), np.float32)
    image[40:80, 30:90] = 1.0
    path = tmp_path / "dropped.npy"
    np.save(path, image)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    event = QDropEvent(QPointF(20, 20), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    window.dropEvent(event)
    np.testing.assert_allclose(window.state.image, image)


# ----------------------------------------------------------------------------------------------- sampling
def test_changing_the_mask_updates_the_measurement(window):
    state, controls = window.state, window.sampling
    controls.spokes_spin.setValue(45)
    np.testing.assert_array_equal(state.mask, radial_mask(45))
    assert state.mask.mean() == pytest.approx(0.179, abs=0.001)  # the paper's coverage for 45 spokes
    expected = simulate_measurement(state.image, radial_mask(45), state.sigma, state.seed).zero_filled()[0, 0]
    np.testing.assert_allclose(window.measurement_view.adjoint_view.image(), expected.numpy(), atol=1e-6)

    controls.kind_combo.setCurrentIndex(controls.kind_combo.findData("cartesian"))
    np.testing.assert_array_equal(state.mask, cartesian_mask(16, 0.25, seed=state.seed))
    assert controls.centre_spin.maximum() == state.shape[0]  # no centre-row count that the image cannot hold
    controls.sigma_spin.setValue(0.0)
    assert state.sigma == 0.0
    # noiseless: the measurement is exactly M F x
    k = MRIOperator(state.mask).forward(window.state.ground_truth_tensor())
    np.testing.assert_allclose(state.measurement.y.numpy(), k.numpy(), atol=1e-6)


def test_brush_and_eraser_draw_on_the_mask(window, qtbot):
    state, painter = window.state, window.measurement_view.painter
    window.tabs.setCurrentWidget(window.measurement_view)
    controls = window.sampling
    controls.radius_spin.setValue(0.0)  # one k-space sample per stamp
    controls.tool_buttons["brush"].setChecked(True)
    assert not state.mask[10, 10]
    viewport = painter.graphics.viewport()
    qtbot.mouseClick(viewport, Qt.MouseButton.LeftButton, pos=view_position(painter, 10, 10))
    assert state.mask[10, 10] and state.mask.sum() > 0
    assert state.mask_spec == "custom" and controls.current_kind() == "custom"
    np.testing.assert_array_equal(state.measurement.mask, state.mask)  # the measurement was re-simulated

    # a drag paints a stroke along the mouse path
    left = Qt.MouseButton.LeftButton
    start, end = view_position(painter, 5, 100), view_position(painter, 5, 120)
    send_mouse(viewport, QMouseEvent.Type.MouseButtonPress, start, left)
    for t in np.linspace(0, 1, 8):
        qtbot.wait(25)  # pyqtgraph drops mouse moves that come faster than its rate limit
        send_mouse(viewport, QMouseEvent.Type.MouseMove, start + (end - start) * float(t), left)
    send_mouse(viewport, QMouseEvent.Type.MouseButtonRelease, end, Qt.MouseButton.NoButton)
    assert state.mask[5, 100:121].all()

    controls.tool_buttons["eraser"].setChecked(True)
    qtbot.mouseClick(viewport, Qt.MouseButton.LeftButton, pos=view_position(painter, 10, 10))
    assert not state.mask[10, 10]
    # reset returns to the pattern the drawing started from
    controls.set_spec(controls.base_spec)
    np.testing.assert_array_equal(state.mask, radial_mask(25))


def test_erasing_everything_disables_run(window):
    window.state.set_mask(np.zeros((128, 128), bool))
    assert not window.state.ready and not window.method_panel.run_controls.run_button.isEnabled()
    assert "empty" in window.state.measurement_error


# ----------------------------------------------------------------------------------------------- runs
def test_run_adds_a_comparison_tile(window, qtbot, errors):
    window.method_panel.select_method("adjoint")
    run_and_wait(qtbot, window, 1, errors)
    record = window.state.results[0]
    assert not record.cancelled and record.method == "adjoint"
    np.testing.assert_allclose(record.image, window.state.adjoint, atol=1e-6)
    expected = metrics.psnr(np.clip(window.state.adjoint, 0, 1), window.state.image)[0]
    assert record.psnr == pytest.approx(float(expected), abs=1e-4)
    tile = window.comparison.tiles[f"run:{record.run_id}"]
    assert f"{record.psnr:.2f}" in tile.view.caption_label.text()
    assert set(window.comparison.tiles) == {"truth", "adjoint", f"run:{record.run_id}"}
    # all tiles pan and zoom together
    window.tabs.setCurrentWidget(window.comparison)
    qtbot.wait(50)
    truth = window.comparison.tiles["truth"].view.view_box
    truth.setRange(xRange=(10, 50), yRange=(20, 60), padding=0)
    (x0, x1), (y0, y1) = truth.viewRange()
    assert (x0 + x1) / 2 == pytest.approx(30, abs=0.5) and x1 - x0 < 64  # zoomed in around the request
    for other in window.comparison.tiles.values():
        np.testing.assert_allclose(other.view.view_box.viewRange(), truth.viewRange(), atol=0.5)
    # zooming any tile with the wheel zooms them all
    viewport = tile.view.graphics.viewport()
    centre = QPointF(viewport.width() / 2, viewport.height() / 2)
    wheel = QWheelEvent(centre, viewport.mapToGlobal(centre), QPoint(0, 0), QPoint(0, 240), Qt.MouseButton.NoButton,
                        Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    before = truth.viewRange()[0][1] - truth.viewRange()[0][0]
    QApplication.sendEvent(viewport, wheel)
    after = truth.viewRange()[0][1] - truth.viewRange()[0][0]
    assert after < 0.9 * before
    np.testing.assert_allclose(window.comparison.tiles["adjoint"].view.view_box.viewRange(), truth.viewRange(),
                               atol=0.5)
    assert errors == []


def test_tv_beats_the_adjoint(window, qtbot, errors):
    if "tv" not in window.method_panel.methods:
        pytest.skip("total variation is not registered yet")
    panel = window.method_panel
    panel.select_method("adjoint")
    panel.run()
    panel.select_method("tv")
    panel.iterations_spin.setValue(100)
    run_and_wait(qtbot, window, 2, errors)
    adjoint, tv = window.state.results
    assert tv.method == "tv" and tv.psnr > adjoint.psnr + 1.0


def test_cancel_stops_within_an_iteration_and_queued_runs_follow(window, qtbot):
    panel = window.method_panel
    window.queue.submit(slow_job(window))
    panel.select_method("adjoint")
    panel.run()  # queued behind the slow run
    assert len(window.queue.pending) + (window.queue.current is not None) == 2
    qtbot.waitUntil(lambda: bool(window.live_view.data["objective"]), timeout=WAIT_MS)  # it is running and reporting
    assert window.tabs.currentWidget() is window.live_view
    with qtbot.waitSignal(window.queue.jobFinished, timeout=WAIT_MS):
        next(a for a in window.shortcut_actions if a.text() == "&Cancel run").trigger()  # Esc
    qtbot.waitUntil(lambda: len(window.state.results) == 2 and not window.queue.busy, timeout=WAIT_MS)
    cancelled, adjoint = window.state.results
    assert cancelled.cancelled and 0 < cancelled.iterations < 100_000
    assert adjoint.method == "adjoint" and not adjoint.cancelled


def test_cancel_all_empties_the_queue(window, qtbot):
    jobs = [slow_job(window) for _ in range(3)]
    for job in jobs:
        window.queue.submit(job)
    qtbot.waitUntil(lambda: window.queue.current is not None, timeout=WAIT_MS)
    window.queue.cancel_all()
    qtbot.waitUntil(lambda: not window.queue.busy, timeout=WAIT_MS)
    assert all(job.cancel.is_set() for job in jobs)
    assert len(window.state.results) <= 1  # only the run that had started reports (as cancelled)
    assert all(r.cancelled for r in window.state.results)


def test_a_run_for_a_replaced_image_is_dropped(window, qtbot, tmp_path):
    window.queue.submit(slow_job(window, 20))
    qtbot.waitUntil(lambda: window.queue.current is not None, timeout=WAIT_MS)
    np.save(tmp_path / "other.npy", np.eye(128, dtype=np.float32))
    window.open_path(tmp_path / "other.npy")
    qtbot.waitUntil(lambda: not window.queue.busy, timeout=WAIT_MS)
    assert window.state.results == []


# ----------------------------------------------------------------------------------------------- export/session
def test_export_grid_png_and_results(window, qtbot, tmp_path, errors):
    from PIL import Image

    window.method_panel.select_method("adjoint")
    run_and_wait(qtbot, window, 1, errors)
    window.tabs.setCurrentWidget(window.comparison)
    window.comparison.inset_check.setChecked(True)
    png = tmp_path / "grid.png"
    window.comparison.save_png(png)
    with Image.open(png) as grid:
        assert grid.width > 300 and grid.height > 150
    for name in ("results.npz", "results.h5"):
        sessions.export_results(tmp_path / name, window.state)
        bundle = bundles.read_bundle(tmp_path / name)
        record = window.state.results[0]
        np.testing.assert_allclose(bundle.arrays["ground_truth"], window.state.image)
        np.testing.assert_array_equal(bundle.arrays["mask"], window.state.mask)
        np.testing.assert_allclose(bundle.arrays[f"run{record.run_id}__image"], record.image)
        assert bundle.meta["kind"] == "results" and bundle.meta["runs"][0]["psnr"] == pytest.approx(record.psnr)
    assert not list(tmp_path.glob(".*.tmp")) and not list(tmp_path.glob(".grid.png*"))  # atomic: no leftovers


@pytest.mark.parametrize("name", ["session.npz", "session.h5", "session_folder"])
def test_session_round_trip(window, qtbot, tmp_path, errors, name):
    state = window.state
    window.sampling.sigma_spin.setValue(0.02)
    window.sampling.seed_spin.setValue(7)
    mask = radial_mask(30)
    mask[0, :] = True
    state.set_mask(mask)
    window.method_panel.select_method("adjoint")
    run_and_wait(qtbot, window, 1, errors)
    window.comparison.inset_check.setChecked(True)
    path = tmp_path / name
    window.save_session(path)
    saved_image, saved_results = state.image.copy(), [r.image.copy() for r in state.results]

    other = tmp_path / "other.npy"
    np.save(other, np.eye(128, dtype=np.float32))
    window.open_path(other)
    assert state.results == []
    assert window.open_path(path)
    np.testing.assert_allclose(state.image, saved_image)
    np.testing.assert_array_equal(state.mask, mask)
    assert state.sigma == pytest.approx(0.02) and state.seed == 7 and state.mask_spec == "custom"
    assert window.sampling.sigma_spin.value() == pytest.approx(0.02) and window.sampling.current_kind() == "custom"
    assert len(state.results) == 1
    np.testing.assert_allclose(state.results[0].image, saved_results[0])
    assert window.comparison.inset_check.isChecked()
    assert f"run:{state.results[0].run_id}" in window.comparison.tiles
    assert errors == []


def test_reading_a_non_session_bundle_fails_clearly(tmp_path):
    np.savez(tmp_path / "plain.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="not a genreg-viewer session"):
        bundles.read_bundle(tmp_path / "plain.npz")
    assert not bundles.is_bundle(tmp_path / "plain.npz")
    with pytest.raises(ValueError, match="use a .npz or .h5"):
        sessions.export_results(tmp_path / "results.txt", None)


# ----------------------------------------------------------------------------------------------- misc
def test_theme_switch_changes_the_palette(window):
    window.set_theme("dark")
    assert QApplication.instance().palette().color(QApplication.instance().palette().ColorRole.Window).lightness() < 128
    window.set_theme("light")
    assert QApplication.instance().palette().color(QApplication.instance().palette().ColorRole.Window).lightness() > 128
    assert window.settings.value("theme") == "light"
    window.set_theme("system")


def test_keyboard_shortcuts_are_declared(window):
    keys = {a.text().replace("&", ""): [s.toString() for s in a.shortcuts()] for a in window.shortcut_actions}
    assert keys["Run method"] == ["Ctrl+R"]
    assert keys["Cancel run"] == ["Esc"]
    assert keys["Export comparison as PNG…"] == ["Ctrl+E"]
    assert "Ctrl+O" in keys["Open image or session…"]
