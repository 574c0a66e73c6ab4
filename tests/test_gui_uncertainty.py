"""The Uncertainty tab (issue 25): for a run with a posterior std map and its ground truth, the error map beside the
std map (one cursor, linked zoom), the calibration and sparsification curves of the run, and its posterior samples as
a flip-book; a run without a ground truth shows its std map and samples alone.

The curves are checked against a plain numpy computation from the run's own arrays (not the functions the app uses),
the flip-book against the samples the run kept, and the tab's layout at 1280x800."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PyQt6.QtCore import Qt  # noqa: E402
from PyQt6.QtGui import QMouseEvent  # noqa: E402

from genreg_viewer.application import RunRecord  # noqa: E402
from genreg_viewer.application import bundles  # noqa: E402
from genreg_viewer.gui.layout_check import layout_problems  # noqa: E402
from genreg_viewer.models.vae import bundled_model_available  # noqa: E402

pytest.register_assert_rewrite("gui_helpers")
from gui_helpers import WAIT_MS, run_and_wait, send_mouse, view_position  # noqa: E402

pytest_plugins = ["gui_helpers"]  # the errors and window fixtures

pytestmark = pytest.mark.slow  # the desktop app driven end to end

needs_covar = pytest.mark.skipif(not bundled_model_available("covar")[0],
                                 reason="the bundled covar weights are not trained yet")
SAMPLES = 6  #: posterior samples of the test run (all kept: at most 8 are)


def coverage_curve(truth, estimate, std, scale=1.0):
    """Share of pixels with |x - x_hat| / (scale s) <= k for k = 0, 0.1, ..., 4 (numpy, float64)."""
    error = np.abs(truth.astype(np.float64) - estimate.astype(np.float64)).ravel()
    z = error / (scale * std.astype(np.float64).ravel())
    ks = np.arange(41) / 10
    return ks, np.array([np.mean(z <= k) for k in ks])


def sparsification(truth, estimate, std):
    """Mean |error| left after removing the floor(j n / 100) pixels of largest std (and of largest error), relative
    to the mean |error| of all pixels, j = 0 .. 99. Pixels of equal std at the cut are removed in random order: their
    expected share of the removed sum is the number removed from the tie times the tie's mean error."""
    error = np.abs(truth.astype(np.float64) - estimate.astype(np.float64)).ravel()
    n, mean = error.size, error.mean()

    def left(key):
        descending = np.sort(key)[::-1]
        values = []
        for j in range(100):
            removed = j * n // 100
            if removed == 0:
                values.append(1.0)
                continue
            cut = descending[removed - 1]
            above, tie = key > cut, key == cut
            removed_sum = error[above].sum() + (removed - above.sum()) * error[tie].mean()
            values.append((error.sum() - removed_sum) / (n - removed) / mean)
        return np.array(values)

    return np.arange(100) / 100, left(std.astype(np.float64).ravel()), left(error)


def curve(plot, name):
    item = next(i for i in plot.listDataItems() if i.name() == name)
    return item.getData()


def hover(view, row, col):
    send_mouse(view.graphics.viewport(), QMouseEvent.Type.MouseMove, view_position(view, row, col),
               Qt.MouseButton.NoButton)


def run_mean_covar(window, qtbot, errors) -> RunRecord:
    method = window.method_panel
    assert method.select_method("mean+covar")
    method.iterations_spin.setValue(3)
    method.form.set_values({"posterior_samples": SAMPLES})  # the std map's option: 0 draws none
    run_and_wait(qtbot, window, 1, errors)
    return window.state.results[0]


@needs_covar
def test_a_mean_covar_run_shows_its_curves_maps_and_samples(window, qtbot, errors):
    record = run_mean_covar(window, qtbot, errors)
    samples, std = record.arrays["samples"], record.arrays["std_map"]
    # the samples kept are the draws the std map was computed from (no second sampling pass)
    assert samples.shape == (SAMPLES, 128, 128) and samples.dtype == np.float32
    np.testing.assert_allclose(std, samples.std(axis=0, ddof=1), rtol=1e-4, atol=1e-7)
    panel = window.uncertainty
    window.tabs.setCurrentWidget(panel)
    assert panel.current_run() is record
    truth, estimate = window.state.image, record.image
    error = np.abs(truth - estimate)

    # the calibration curve and the Gaussian's, against numpy
    ks, expected = coverage_curve(truth, estimate, std)
    k_shown, shown = curve(panel.calibration_plot, "this run")
    np.testing.assert_allclose(k_shown, ks, atol=1e-12)
    np.testing.assert_allclose(shown, expected, atol=1.5 / error.size)  # at most a pixel on a boundary
    k_gauss, gaussian = curve(panel.calibration_plot, "calibrated")
    np.testing.assert_allclose(gaussian, [math.erf(k / math.sqrt(2)) for k in k_gauss], atol=1e-12)
    # the sparsification curves and AUSE
    fractions, by_std, oracle = sparsification(truth, estimate, std)
    f_shown, by_std_shown = curve(panel.sparsification_plot, "largest std first")
    _f, oracle_shown = curve(panel.sparsification_plot, "largest error first")
    np.testing.assert_allclose(f_shown, fractions, atol=1e-12)
    np.testing.assert_allclose(by_std_shown, by_std, rtol=1e-9)
    np.testing.assert_allclose(oracle_shown, oracle, rtol=1e-9)
    ause = float(np.mean(by_std - oracle))
    assert panel.shown.curves.ause == pytest.approx(ause, rel=1e-9)
    assert f"AUSE <b>{ause:.3f}</b>" in panel.summary_label.text()
    assert panel.sparsification_plot.plotItem.titleLabel.text == f"Sparsification · AUSE {ause:.3f}"
    for k, value in zip(("1", "2", "3"), coverage_curve(truth, estimate, std)[1][[10, 20, 30]]):
        assert panel.shown.curves.headline[k] == pytest.approx(value, abs=1.5 / error.size)

    # the error map beside the std map, one colour scale
    np.testing.assert_allclose(panel.error_view.image(), error, atol=1e-7)
    np.testing.assert_array_equal(panel.std_view.image(), std)
    assert panel.error_view.image_item.levels.tolist() == panel.std_view.image_item.levels.tolist()

    # one cursor: hovering either map marks the pixel on both and reads both values
    for view, (row, col) in ((panel.error_view, (40, 70)), (panel.std_view, (90, 33))):
        hover(view, row, col)
        qtbot.waitUntil(lambda pixel=(row, col): panel.pixel == pixel, timeout=WAIT_MS)
        assert panel.readout() == pytest.approx({"error": float(error[row, col]), "std": float(std[row, col])})
        text = panel.readout_label.text()
        assert f"row {row}, col {col}" in text
        assert f"error {error[row, col]:.4f}" in text and f"std {std[row, col]:.4f}" in text
        for marked in (panel.error_view, panel.std_view):
            x, y = marked.marker.getData()
            assert marked.marker.isVisible() and (x[0], y[0]) == (col + 0.5, row + 0.5)
    # a click keeps the pixel after the mouse has left
    qtbot.mouseClick(panel.std_view.graphics.viewport(), Qt.MouseButton.LeftButton,
                     pos=view_position(panel.std_view, 64, 60))
    assert panel.kept_pixel == (64, 60)
    panel.error_view.image_item.hovered.emit(math.nan, math.nan)  # the mouse leaves the map
    assert panel.pixel == (64, 60) and "(kept)" in panel.readout_label.text()
    assert f"error {error[64, 60]:.4f}" in panel.readout_label.text()

    # linked zoom: zooming the std map zooms the error map and the samples alike
    panel.std_view.view_box.setRange(xRange=(20, 60), yRange=(30, 70), padding=0)
    rect = panel.std_view.view_box.viewRect()
    for view in (panel.std_view, panel.error_view, panel.samples_view):
        # the region asked for, centred alike (a view of another shape shows a little more on one side: square
        # pixels, and the samples view has no colour bar)
        other = view.view_box.viewRect()
        assert (other.center().x(), other.center().y()) == pytest.approx((rect.center().x(), rect.center().y()),
                                                                          abs=1e-3)
        assert other.left() <= 20.1 and other.right() >= 59.9 and other.width() < 80  # (a tenth of a pixel)
        assert other.top() <= 30.1 and other.bottom() >= 69.9 and other.height() < 80
    panel.reset_zoom()

    # the flip-book: the slider, the next step (wrapping round) and Play show the kept samples
    assert panel.sample_slider.maximum() == SAMPLES
    for value in (1, 4, SAMPLES):
        panel.sample_slider.setValue(value)
        np.testing.assert_array_equal(panel.samples_view.image(), samples[value - 1])
        assert panel.samples_view.title_label.text() == f"Posterior sample {value} of {SAMPLES}"
    panel.next_sample()
    assert panel.sample_index() == 0
    np.testing.assert_array_equal(panel.samples_view.image(), samples[0])
    qtbot.mouseClick(panel.play_button, Qt.MouseButton.LeftButton)
    assert panel.play_button.isChecked() and panel.timer.isActive()
    qtbot.waitUntil(lambda: panel.sample_index() == 2, timeout=WAIT_MS)
    np.testing.assert_array_equal(panel.samples_view.image(), samples[2])
    qtbot.mouseClick(panel.play_button, Qt.MouseButton.LeftButton)
    assert not panel.timer.isActive()
    assert errors == []


@needs_covar
def test_calibrated_std_scales_the_map_readout_and_coverage_not_the_sparsification(window, qtbot, errors):
    record = run_mean_covar(window, qtbot, errors)
    panel = window.uncertainty
    window.tabs.setCurrentWidget(panel)
    std, truth = record.arrays["std_map"], window.state.image
    sparsification_before = curve(panel.sparsification_plot, "largest std first")[1]
    check = panel.calibrated_std_check
    assert check.isEnabled() and not check.isChecked()  # the phantom set stores a factor for radial:25, 0.05
    check.setChecked(True)
    assert window.covariance.calibrated_std_check.isChecked()  # one choice for both tabs
    factor = panel.std_scale.scale
    assert factor != 1.0
    np.testing.assert_allclose(panel.std_view.image(), factor * std, rtol=1e-6)
    np.testing.assert_allclose(curve(panel.calibration_plot, "this run")[1],
                               coverage_curve(truth, record.image, std, factor)[1], atol=1.5 / std.size)
    np.testing.assert_allclose(curve(panel.sparsification_plot, "largest std first")[1], sparsification_before)
    panel.keep_pixel(10, 20)
    assert panel.readout()["std"] == pytest.approx(factor * float(std[10, 20]), rel=1e-6)
    assert panel.std_view.colorbar.axis.labelText == "calibrated std (intensity)"
    # the flip-book follows the factor: the shown sample is spread about the samples' mean by it
    samples = record.arrays["samples"]
    centre = samples.mean(axis=0, dtype=np.float64)
    np.testing.assert_allclose(panel.samples_view.image(), centre + factor * (samples[panel.sample_index()] - centre),
                               atol=1e-5)
    window.covariance.calibrated_std_check.setChecked(False)  # off in the Covariance tab: off here too
    assert not check.isChecked() and panel.std_scale is None
    np.testing.assert_array_equal(panel.std_view.image(), std)
    np.testing.assert_array_equal(panel.samples_view.image(), samples[panel.sample_index()])


@needs_covar
def test_the_tab_layout_is_intact_at_1280x800(window, qtbot, errors):
    window.resize(1280, 800)
    run_mean_covar(window, qtbot, errors)
    window.tabs.setCurrentWidget(window.uncertainty)
    qtbot.wait(50)
    assert window.uncertainty.curves_widget.isVisible()
    assert layout_problems(window) == []


def test_a_loaded_run_without_ground_truth_shows_the_std_map_and_samples_alone(window, qtbot, tmp_path, errors):
    """A session whose run was not scored against a ground truth (no PSNR): no error map, no curves; the std map,
    its read-out and the flip-book work, and the samples come back from the file."""
    rng = np.random.default_rng(0)
    image = window.state.image
    samples = (image[None] + 0.05 * rng.standard_normal((3, *image.shape))).astype(np.float32)
    std = samples.std(axis=0, ddof=1).astype(np.float32)
    record = RunRecord(run_id=1, method="mean+covar", title="VAE mean + structured covariance",
                       image=samples.mean(axis=0), params={}, iterations=1, seconds=0.1, device="cpu", psnr=None,
                       ssim=None, setting=window.state.setting(), arrays={"std_map": std, "samples": samples})
    window.state.add_result(record)
    path = tmp_path / "no-truth.npz"
    window.save_session(path)
    window.state.clear_results()
    assert window.open_path(path)
    panel = window.uncertainty
    window.tabs.setCurrentWidget(panel)
    loaded = panel.current_run()
    assert loaded is not None and loaded.psnr is None
    np.testing.assert_array_equal(loaded.arrays["samples"], samples)
    assert panel.shown.curves is None and panel.shown.error is None
    assert not panel.curves_widget.isVisible() and not panel.error_view.isVisible()
    assert panel.calibration_plot.listDataItems() == [] and panel.sparsification_plot.listDataItems() == []
    assert "no ground truth" in panel.summary_label.text()
    np.testing.assert_array_equal(panel.std_view.image(), std)
    hover(panel.std_view, 12, 34)
    qtbot.waitUntil(lambda: panel.pixel == (12, 34), timeout=WAIT_MS)
    assert panel.readout() == {"std": pytest.approx(float(std[12, 34]))}
    assert "error" not in panel.readout_label.text()
    panel.sample_slider.setValue(3)
    np.testing.assert_array_equal(panel.samples_view.image(), samples[2])
    assert errors == []


def test_no_run_with_a_std_map(window, qtbot):
    panel = window.uncertainty
    window.tabs.setCurrentWidget(panel)
    assert panel.current_run() is None and panel.shown is None
    assert "No run with a posterior std yet" in panel.summary_label.text()
    assert not panel.curves_widget.isVisible() and not panel.play_button.isEnabled()
    assert not panel.calibrated_std_check.isEnabled()
    # a run without a std map or samples (TV) is not offered
    window.state.add_result(RunRecord(run_id=window.state.next_run_id(), method="tv", title="TV",
                                      image=window.state.image, params={}, iterations=1, seconds=0.1, device="cpu",
                                      psnr=30.0, ssim=0.9))
    assert panel.run_combo.count() == 0


def test_sessions_without_samples_still_open(window, qtbot, tmp_path):
    """A session written before runs kept samples (a std map only) opens, and shows its curves."""
    image = window.state.image
    std = np.full(image.shape, 0.05, dtype=np.float32) + np.linspace(0, 0.01, image.size,
                                                                      dtype=np.float32).reshape(image.shape)
    record = RunRecord(run_id=1, method="mean+covar", title="old", image=np.clip(image + 0.02, 0, 1), params={},
                       iterations=1, seconds=0.1, device="cpu", psnr=30.0, ssim=0.9, setting=window.state.setting(),
                       arrays={"std_map": std})
    window.state.add_result(record)
    path = tmp_path / "old.npz"
    window.save_session(path)
    bundle = bundles.read_bundle(path)
    assert not any(name.endswith("__samples") for name in bundle.arrays)
    window.state.clear_results()
    assert window.open_path(path)
    panel = window.uncertainty
    assert panel.shown is not None and panel.shown.samples is None and panel.shown.curves is not None
    assert not panel.play_button.isEnabled() and "kept no samples" in panel.samples_view.caption_label.text()
