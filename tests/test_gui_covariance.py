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

from PyQt6.QtCore import Qt  # noqa: E402
from PyQt6.QtGui import QMouseEvent  # noqa: E402

from genreg_viewer.application import RunRecord  # noqa: E402
from genreg_viewer.application.covariance import prepare_covariance as _prepare  # noqa: E402
from genreg_viewer.models.vae import GenerativeModel, VAEConfig, bundled_model_available  # noqa: E402

pytest.register_assert_rewrite("gui_helpers")  # its asserts report like a test's (it is imported here first)
from gui_helpers import WAIT_MS, run_and_wait, send_mouse, view_position  # noqa: E402

pytest_plugins = ["gui_helpers"]  # the errors and window fixtures

pytestmark = pytest.mark.slow  # the desktop app driven end to end

LATENT_DIM = 8  #: of the tiny model


def tiny_model() -> GenerativeModel:
    torch.manual_seed(0)
    config = VAEConfig(image_size=128, latent_dim=LATENT_DIM, widths=(4, 4, 4), dropout=0.0,
                       covariance_kind="covar")
    return GenerativeModel(config).freeze()


def finished_run(window, arrays: dict[str, np.ndarray], method: str = "mean+covar",
                 cancelled: bool = False) -> RunRecord:
    """A run record as a finished reconstruction hands it to the state (the image is the ground truth)."""
    return RunRecord(run_id=window.state.next_run_id(), method=method, title=method, image=window.state.image,
                     params={}, iterations=1, seconds=0.1, device="cpu", psnr=30.0, ssim=0.9, cancelled=cancelled,
                     arrays=arrays)


def std_ramp(high: float) -> np.ndarray:
    return np.linspace(0, high, 128 * 128, dtype=np.float32).reshape(128, 128)


def open_inspector(window, qtbot, loader) -> None:
    panel = window.covariance
    panel.model_loader = loader
    window.tabs.setCurrentWidget(panel)
    qtbot.waitUntil(lambda: panel.prepared is not None or panel.model_error is not None, timeout=WAIT_MS)
    assert panel.model_error is None, panel.model_error


def test_click_shows_the_correlation_row(window, qtbot, errors):
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
    np.testing.assert_allclose(shown, expected.cholesky.correlation_row(row, col), atol=1e-5)
    np.testing.assert_allclose(panel.variance_view.image(), expected.variance, rtol=1e-4)
    assert panel.correlation_view.marker.isVisible()
    star_x, star_y = panel.correlation_view.marker.getData()
    assert (star_x[0], star_y[0]) == (col + 0.5, row + 0.5)
    assert panel.correlation_view.image_item.levels.tolist() == [-1.0, 1.0]
    # residual samples G(z) + L^-T u arrive as a mosaic of the requested count
    qtbot.mouseClick(panel.sample_button, Qt.MouseButton.LeftButton)
    assert panel.mean_combo.currentData() == "samples"
    qtbot.waitUntil(lambda: panel.samples_view.image() is not None, timeout=WAIT_MS)
    assert panel.samples_view.image().shape == (2 * 128 + 2, 2 * 128 + 2)  # 4 samples, 2 px gaps
    assert errors == []


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
    qtbot.waitUntil(lambda: panel.pixel == (40, 80) and not panel.inspector.row_busy, timeout=WAIT_MS)
    assert panel.correlation_view.image()[40, 80] == pytest.approx(1.0)


def test_posterior_std_of_a_run(window, qtbot):
    panel = window.covariance
    std_map = std_ramp(0.2)
    record = finished_run(window, {"std_map": std_map, "latent": np.zeros(LATENT_DIM, np.float32)})
    open_inspector(window, qtbot, tiny_model)
    window.state.add_result(record)
    assert panel.source_combo.currentData() == f"run:{record.run_id}"  # the new run is followed
    np.testing.assert_allclose(panel.std_view.image(), std_map)
    # the run's own latent defines the covariance: z = 0 here
    assert panel.prepared is None  # the ground truth's covariance was dropped
    qtbot.waitUntil(lambda: panel.prepared is not None, timeout=WAIT_MS)
    model = tiny_model()
    expected = _prepare(model, None, np.zeros(8, np.float32))
    np.testing.assert_allclose(panel.mean_view.image(), expected.mean_image(), atol=1e-5)


def test_new_runs_are_followed_until_the_user_chooses_an_image(window, qtbot, errors):
    panel, state = window.covariance, window.state
    model = tiny_model()
    open_inspector(window, qtbot, lambda: model)
    assert panel.following() and panel.source_combo.currentData() == "truth"
    panel.request_pixel(64, 64)
    qtbot.waitUntil(lambda: panel.pixel == (64, 64), timeout=WAIT_MS)

    latent = np.full(LATENT_DIM, 0.5, np.float32)
    first = finished_run(window, {"std_map": std_ramp(0.1), "latent": latent})
    state.add_result(first)  # what the main window does when a run finishes
    assert panel.source_combo.currentData() == f"run:{first.run_id}"
    np.testing.assert_allclose(panel.std_view.image(), first.arrays["std_map"])
    assert panel.std_view.caption_label.text() == ""
    # the inspector decodes the run's own latent and shows the starred pixel's row for it
    qtbot.waitUntil(lambda: panel.prepared is not None and not panel.inspector.row_busy, timeout=WAIT_MS)
    expected = _prepare(model, None, latent)
    np.testing.assert_allclose(panel.mean_view.image(), expected.mean_image(), atol=1e-5)
    np.testing.assert_allclose(panel.correlation_view.image(), expected.cholesky.correlation_row(64, 64),
                               atol=1e-5)

    # runs with nothing to inspect (no std map or latent, or cancelled) leave the choice alone
    state.add_result(finished_run(window, {}, method="tv"))
    state.add_result(finished_run(window, {"std_map": std_ramp(0.3)}, cancelled=True))
    assert panel.source_combo.currentData() == f"run:{first.run_id}"

    # choosing an image yourself pins it: later runs no longer take over
    combo = panel.source_combo
    combo.setFocus()
    while combo.currentData() != "adjoint":
        qtbot.keyClick(combo, Qt.Key.Key_Up)
    assert not panel.following()
    second = finished_run(window, {"std_map": std_ramp(0.2), "latent": np.zeros(LATENT_DIM, np.float32)})
    state.add_result(second)
    assert combo.currentData() == "adjoint" and panel.std_view.image() is None
    # following again shows the newest run at once
    panel.follow_action.trigger()
    assert panel.following() and combo.currentData() == f"run:{second.run_id}"
    np.testing.assert_allclose(panel.std_view.image(), second.arrays["std_map"])
    assert errors == []


def test_a_latent_of_another_model_is_not_decoded(window, qtbot, errors):
    """A flow-prior run's latent lives in the flow's space: the inspector encodes the run's image instead."""
    panel = window.covariance
    model = tiny_model()
    open_inspector(window, qtbot, lambda: model)
    record = finished_run(window, {"latent": np.zeros(128 * 128, np.float32)}, method="flow-prior")
    window.state.add_result(record)
    assert panel.source_combo.currentData() == f"run:{record.run_id}"
    qtbot.waitUntil(lambda: panel.prepared is not None, timeout=WAIT_MS)
    expected = _prepare(model, record.image, None)
    np.testing.assert_allclose(panel.mean_view.image(), expected.mean_image(), atol=1e-5)
    assert "posterior std" in panel.std_view.caption_label.text()
    assert errors == []


@pytest.mark.skipif(not bundled_model_available("covar")[0], reason="the bundled covar weights are not trained yet")
def test_a_finished_mean_covar_run_is_shown(window, qtbot, errors):
    """A real (short) mean+covar run from the method panel: its posterior std map and latent reach the inspector."""
    from genreg_viewer.gui.panels.covariance import load_covariance_model

    panel = window.covariance
    open_inspector(window, qtbot, load_covariance_model)
    method = window.method_panel
    assert method.select_method("mean+covar")
    method.iterations_spin.setValue(2)
    method.form.set_values({"posterior_samples": 2})
    run_and_wait(qtbot, window, 1, errors)
    record = window.state.results[0]
    assert record.method == "mean+covar" and "std_map" in record.arrays
    # 2 iterations cannot pass the convergence test: the run finished (its budget), the details say the test did
    # not fire
    assert record.info["converged"] is False
    assert "finished: 2 iterations" in method.run_controls.progress_label.text()
    assert "convergence test had not fired" in method.run_controls.progress_label.toolTip()
    assert panel.source_combo.currentData() == f"run:{record.run_id}"
    np.testing.assert_allclose(panel.std_view.image(), record.arrays["std_map"])
    assert panel.inspector.source.latent is record.arrays["latent"]
    qtbot.waitUntil(lambda: panel.prepared is not None, timeout=WAIT_MS)
    assert errors == []


def test_missing_model_is_reported_without_a_dialog(window, qtbot, errors):
    panel = window.covariance

    def missing():
        raise ValueError("no 'covar' VAE weights in resources/weights")

    panel.model_loader = missing
    window.tabs.setCurrentWidget(panel)
    qtbot.waitUntil(lambda: panel.model_error is not None, timeout=WAIT_MS)
    assert "weights" in panel.status_label.text()
    assert errors == []


@pytest.mark.skipif(not bundled_model_available("covar")[0], reason="the bundled covar weights are not trained yet")
def test_bundled_model_click(window, qtbot):
    from genreg_viewer.gui.panels.covariance import load_covariance_model

    panel = window.covariance
    open_inspector(window, qtbot, load_covariance_model)
    panel.request_pixel(70, 64)
    qtbot.waitUntil(lambda: panel.pixel == (70, 64), timeout=WAIT_MS)
    assert panel.correlation_view.image()[70, 64] == pytest.approx(1.0)
