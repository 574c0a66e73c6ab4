"""The covariance inspector: clicking or dragging over an image shows the covariance model's correlation row at
that pixel (exactly 1 at the starred pixel), plus the variance map, residual samples and a run's posterior std.

A small randomly initialised structured-covariance VAE stands in for the bundled weights, so the inspector's
whole path (worker thread, encoder, sparse Cholesky, coalesced requests) is tested on every machine; the bundled
model is checked as well once its weights exist."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("pytestqt")

from PyQt6.QtCore import QSettings, Qt  # noqa: E402
from PyQt6.QtGui import QMouseEvent  # noqa: E402
from PyQt6.QtWidgets import QMessageBox  # noqa: E402

from genreg_viewer.gui.main_window import MainWindow  # noqa: E402
from genreg_viewer.gui.panels.covariance import _prepare  # noqa: E402
from genreg_viewer.gui.state import RunRecord  # noqa: E402
from genreg_viewer.models.vae import GenerativeModel, VAEConfig, bundled_model_available  # noqa: E402

from test_gui import send_mouse, view_position  # noqa: E402

WAIT_MS = 60_000


def tiny_model() -> GenerativeModel:
    torch.manual_seed(0)
    config = VAEConfig(image_size=128, latent_dim=8, widths=(4, 4, 4), dropout=0.0, covariance_kind="covar")
    return GenerativeModel(config).freeze()


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch):
    shown = []
    monkeypatch.setattr(QMessageBox, "critical", staticmethod(lambda *a, **k: shown.append(a)))
    win = MainWindow(settings=QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    win.dialog_errors = shown
    qtbot.addWidget(win)
    win.resize(1400, 900)
    win.show()
    qtbot.waitExposed(win)
    yield win
    win.close()


def open_inspector(window, qtbot, loader) -> None:
    panel = window.covariance
    panel.model_loader = loader
    window.tabs.setCurrentWidget(panel)
    qtbot.waitUntil(lambda: panel.prepared is not None or panel.model_error is not None, timeout=WAIT_MS)
    assert panel.model_error is None, panel.model_error


def test_click_shows_the_correlation_row(window, qtbot):
    panel = window.covariance
    model = tiny_model()
    open_inspector(window, qtbot, lambda: model)
    row, col = 64, 60
    qtbot.mouseClick(panel.source_view.graphics.viewport(), Qt.MouseButton.LeftButton,
                     pos=view_position(panel.source_view, row, col))
    qtbot.waitUntil(lambda: panel.pixel == (row, col), timeout=WAIT_MS)
    shown = panel.correlation_view.image()
    assert shown[row, col] == pytest.approx(1.0)
    assert shown.min() >= -1.0 and shown.max() <= 1.0
    expected = _prepare(model, window.state.image, None)
    np.testing.assert_allclose(shown, expected["cholesky"].correlation_row(row, col), atol=1e-5)
    np.testing.assert_allclose(panel.variance_view.image(), expected["variance"], rtol=1e-4)
    assert panel.correlation_view.marker.isVisible()
    star_x, star_y = panel.correlation_view.marker.getData()
    assert (star_x[0], star_y[0]) == (col + 0.5, row + 0.5)
    assert panel.correlation_view.image_item.levels.tolist() == [-1.0, 1.0]
    # residual samples G(z) + L^-T u arrive as a mosaic of the requested count
    qtbot.waitUntil(lambda: panel.samples_view.image() is not None, timeout=WAIT_MS)
    assert panel.samples_view.image().shape == (2 * 128 + 2, 2 * 128 + 2)  # 4 samples, 2 px gaps
    assert window.dialog_errors == []


def test_dragging_follows_the_mouse(window, qtbot):
    panel = window.covariance
    open_inspector(window, qtbot, tiny_model)
    viewport = panel.source_view.graphics.viewport()
    left = Qt.MouseButton.LeftButton
    start, end = view_position(panel.source_view, 40, 40), view_position(panel.source_view, 40, 80)
    send_mouse(viewport, QMouseEvent.Type.MouseButtonPress, start, left)
    for t in np.linspace(0, 1, 10):
        qtbot.wait(25)
        send_mouse(viewport, QMouseEvent.Type.MouseMove, start + (end - start) * float(t), left)
    send_mouse(viewport, QMouseEvent.Type.MouseButtonRelease, end, Qt.MouseButton.NoButton)
    qtbot.waitUntil(lambda: panel.pixel == (40, 80) and not panel._row_busy, timeout=WAIT_MS)
    assert panel.correlation_view.image()[40, 80] == pytest.approx(1.0)


def test_posterior_std_of_a_run(window, qtbot):
    panel = window.covariance
    std_map = np.linspace(0, 0.2, 128 * 128, dtype=np.float32).reshape(128, 128)
    record = RunRecord(run_id=window.state.next_run_id(), method="mean+covar", title="mean+covar",
                       image=window.state.image, params={}, iterations=1, seconds=0.1, device="cpu", psnr=30.0, ssim=0.9,
                       arrays={"std_map": std_map, "latent": np.zeros(8, np.float32)})
    window.state.add_result(record)
    open_inspector(window, qtbot, tiny_model)
    panel.source_combo.setCurrentIndex(panel.source_combo.findData(f"run:{record.run_id}"))
    np.testing.assert_allclose(panel.std_view.image(), std_map)
    # the run's own latent defines the covariance: z = 0 here
    assert panel.prepared is None  # the ground truth's covariance was dropped
    qtbot.waitUntil(lambda: panel.prepared is not None, timeout=WAIT_MS)
    model = tiny_model()
    expected = _prepare(model, None, np.zeros(8, np.float32))
    np.testing.assert_allclose(panel.mean_view.image(), expected["mean"][0, 0].numpy(), atol=1e-5)


def test_missing_model_is_reported_without_a_dialog(window, qtbot):
    panel = window.covariance

    def missing():
        raise ValueError("no 'covar' VAE weights in resources/weights")

    panel.model_loader = missing
    window.tabs.setCurrentWidget(panel)
    qtbot.waitUntil(lambda: panel.model_error is not None, timeout=WAIT_MS)
    assert "weights" in panel.status_label.text()
    assert window.dialog_errors == []


@pytest.mark.skipif(not bundled_model_available("covar")[0], reason="the bundled covar weights are not trained yet")
def test_bundled_model_click(window, qtbot):
    from genreg_viewer.gui.panels.covariance import load_covariance_model

    panel = window.covariance
    open_inspector(window, qtbot, load_covariance_model)
    panel.request_pixel(70, 64)
    qtbot.waitUntil(lambda: panel.pixel == (70, 64), timeout=WAIT_MS)
    assert panel.correlation_view.image()[70, 64] == pytest.approx(1.0)
