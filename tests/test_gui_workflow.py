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

pytestmark = pytest.mark.slow  # the desktop app driven end to end


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


def test_sweep_legend_keeps_off_the_best_points(qtbot):
    from genreg_viewer.gui.widgets.plots import ThemedPlot

    plot = ThemedPlot("PSNR", "spokes", "dB", legend=True)
    qtbot.addWidget(plot)
    spokes = np.array([5, 15, 25, 35, 45, 55, 65], float)
    rising = 20 + 5 * np.log(spokes)  # best points top right, where the legend used to sit
    plot.plot(spokes, rising, name="tv")
    assert plot.place_legend_away_from(spokes, rising) == "bottom-right"
    falling = rising[::-1]
    assert plot.place_legend_away_from(spokes, falling) in ("top-right", "bottom-left")


def test_exported_grid_is_the_tiles_without_the_handle(window, qtbot, tmp_path, errors):
    from PIL import Image

    adjoint_run(window, qtbot, errors)
    comparison = window.comparison
    window.tabs.setCurrentWidget(comparison)
    comparison.inset_check.setChecked(True)
    qtbot.wait(50)
    png = tmp_path / "grid.png"
    comparison.save_png(png)
    tiles = list(comparison.tiles.values())
    bottom = max(t.geometry().bottom() for t in tiles) - min(t.geometry().top() for t in tiles) + 1
    with Image.open(png) as grid:
        ratio = grid.width / (max(t.geometry().right() for t in tiles) - min(t.geometry().left() for t in tiles) + 1)
        assert abs(grid.height - bottom * ratio) <= 2  # no empty band below the tiles
    assert comparison.roi.isVisible() and not comparison.tiles["truth"].region_outline.isVisible()  # restored
    # every caption is whole: the label is as tall as its wrapped text needs
    for tile in tiles:
        label = tile.view.caption_label
        assert label.height() >= label.heightForWidth(label.width())


@pytest.mark.parametrize("size", [(1280, 800), (1600, 1000)])
def test_every_tab_fits_the_window(qtbot, tmp_path, errors, size):
    """At 1280x800 and 1600x1000 the window keeps its size on every tab, and no tab asks for more room than the
    space it is given (nothing is squeezed below its minimum, so no caption or control is cut)."""
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    window = MainWindow(settings=settings)
    qtbot.addWidget(window)
    window.resize(*size)
    window.show()
    qtbot.waitExposed(window)
    for index in range(window.tabs.count()):
        window.tabs.setCurrentIndex(index)
        qtbot.wait(30)
        page = window.tabs.currentWidget()
        assert (window.width(), window.height()) == size, window.tabs.tabText(index)
        hint = page.minimumSizeHint()
        assert hint.width() <= page.width() and hint.height() <= page.height(), (window.tabs.tabText(index), hint,
                                                                                 page.size())
    for dock in (window.sampling_dock, window.method_dock):
        assert dock.widget().minimumSizeHint().width() <= dock.width()
    window.close()


def test_the_diverging_map_is_white_at_zero_in_the_app_and_the_cli(window, qtbot):
    """One map for both: white (#ffffff) exactly at 0, ColorBrewer RdBu's darkest blue and red at -1 and +1, and
    the app's image colours equal the CLI's at the same values."""
    from genreg_viewer.gui.widgets.image_view import DIVERGING, ImageView
    from genreg_viewer.render import diverging_matplotlib, diverging_rgb

    values = np.array([[-1.0, -0.5, 0.0, 0.3, 1.0]], np.float32)
    view = ImageView("test")
    qtbot.addWidget(view)
    view.set_image(values, levels=(-1.0, 1.0), colormap=DIVERGING)
    view.show()
    qtbot.wait(20)
    qimage = view.image_item.qimage
    app_rgb = np.array([[(qimage.pixel(i, 0) >> s) & 255 for s in (16, 8, 0)] for i in range(values.shape[1])])
    assert app_rgb[2].tolist() == [255, 255, 255]
    assert app_rgb[0].tolist() == [0x05, 0x30, 0x61] and app_rgb[4].tolist() == [0x67, 0x00, 0x1F]
    cli_rgb = np.round(255 * diverging_matplotlib()((values[0] + 1) / 2)[:, :3])
    assert cli_rgb[2].tolist() == [255, 255, 255]
    np.testing.assert_allclose(app_rgb, cli_rgb, atol=6)  # 257-entry tables, same stops
    np.testing.assert_allclose(255 * diverging_rgb(values[0], 1.0), cli_rgb, atol=3)


def test_worker_threads_use_torchs_thread_count(qtbot):
    """OpenMP keeps its thread count per thread: a new thread starts with every core whatever the main thread set.
    The app's workers (the reconstruction thread and the superqt workers) apply torch's count on their own thread;
    read back through OpenMP itself."""
    import ctypes
    import glob
    import os

    import torch

    from genreg_viewer.gui.workers import WorkerThread

    libraries = glob.glob(os.path.join(os.path.dirname(torch.__file__), "lib", "libgomp*"))
    if not libraries or os.cpu_count() == 1:
        pytest.skip("torch is not built with GNU OpenMP here, or one core only")
    openmp = ctypes.CDLL(libraries[0])
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        worker = WorkerThread("test")
        results = []
        worker.done.connect(lambda tag, value: results.append(value))
        worker.submit("count", openmp.omp_get_max_threads)
        qtbot.waitUntil(lambda: bool(results), timeout=30_000)
        assert results == [1]
        worker.shutdown()
    finally:
        torch.set_num_threads(before)


def test_the_run_status_is_shown_whole(window, qtbot, errors):
    """The longest status text under the progress bar fits its (fixed) height at the dock's width."""
    adjoint_run(window, qtbot, errors)
    label = window.method_panel.run_controls.progress_label
    label.setText("Variational latent posterior (Marinescu et al., BRGM) cancelled after 1234 of 100000 "
                  "iterations, 12 min 34 s")
    assert label.heightForWidth(label.width()) <= label.height()


def test_few_spokes_runs_use_the_warm_started_defaults(window, qtbot, errors):
    """At 5 spokes the Method panel shows the setting's tuned solver variant (warm start from mean+identity, marginal
    precision penalty) and a run uses it; back at 25 spokes the form returns to eq. 12 from the adjoint."""
    panel = window.method_panel
    assert panel.select_method("mean+covar")
    window.sampling.spokes_spin.setValue(5)
    qtbot.waitUntil(lambda: window.state.mask_spec == "radial:5", timeout=5000)
    values = panel.form.values()
    assert values["warm_start"] == "identity" and values["precision_penalty"] == "marginal"
    panel.iterations_spin.setValue(3)
    run_and_wait(qtbot, window, 1, errors)
    record = window.state.results[-1]
    assert record.params["warm_start"] == "identity" and record.iterations == 3 and record.psnr is not None
    window.sampling.spokes_spin.setValue(25)
    qtbot.waitUntil(lambda: window.state.mask_spec == "radial:25", timeout=5000)
    assert panel.form.values()["warm_start"] == "none"
