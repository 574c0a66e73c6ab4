"""Uncertainty: how far to trust a run's posterior std map, for one run at a time.

For a run with a std map (mean+covar, mean+diagonal, latent-vi with posterior samples) and its ground truth the tab
shows the error map ``|x - x_hat|`` beside the std map, on one colour scale, zoomed together, with one cursor: hovering
a pixel of either map marks it in both and reads both values (a click keeps the pixel); the calibration curve (the
share of pixels whose error is within ``k`` std, beside the Gaussian's share, which a calibrated map follows) and the
sparsification curves (the mean error left after removing the pixels with the largest std, and after removing those
with the largest error: the best any map can do; AUSE is the area between them); and the run's posterior samples as
a flip-book (slider, or Play). A run without a ground truth (no PSNR) shows its std map and samples alone.

With *Calibrated std* checked (the same box as the Covariance tab's) the std map, its read-out and the calibration
curve use the raw map times the stored factor for the run's method and setting; the sparsification curves depend only
on how the std ranks the pixels, so the factor does not change them. The numbers come from
:mod:`genreg_viewer.application.uncertainty` (Qt-free): those ``genreg calibrate`` reports for the one image.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import Qt, QTimer, pyqtSignal
from PyQt6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from ...application.experiment import ExperimentState
from ...application.runs import RunRecord
from ...application.uncertainty import RunUncertainty, has_uncertainty, run_uncertainty, std_scale_of_run
from ...evaluation.calibration import StdScale
from ..qt_typed import layout_of
from ..widgets.controls import compact_combo, wrapped_label
from ..widgets.image_view import GREY, SEQUENTIAL, ImageView, em
from ..widgets.plots import ThemedPlot

#: milliseconds each posterior sample is shown while the flip-book plays
FLIP_INTERVAL_MS = 500
#: what the read-out says while no pixel is hovered or kept
READOUT_HINT = "Hover over the error or std map to read both at one pixel; click to keep the pixel"


class _FittedImageView(ImageView):
    """An image view no taller than its square image area, title and caption need: the panel gives the rest of its
    height to the plots instead of leaving it empty under the images."""

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt API)
        super().resizeEvent(event)
        spacing = layout_of(self).spacing()
        used = sum(label.heightForWidth(self.width()) + spacing
                   for label in (self.title_label, self.caption_label) if not label.isHidden())
        height = self.width() + used
        if self.maximumHeight() != height:
            self.setMaximumHeight(height)


class UncertaintyPanel(QWidget):
    """Error map beside std map, calibration and sparsification curves, and posterior samples of one run."""

    errorOccurred = pyqtSignal(str, str)

    def __init__(self, state: ExperimentState, parent: QWidget | None = None):
        super().__init__(parent)
        self.state = state
        self.shown: RunUncertainty | None = None  #: what is on screen (None: no run with a std map)
        self.std_scale: StdScale | None = None  #: the stored factor applied (only while "Calibrated std" is checked)
        self.pixel: tuple[int, int] | None = None  #: the pixel read out (hovered, else kept)
        self.kept_pixel: tuple[int, int] | None = None  #: the pixel a click kept
        self.timer = QTimer(self)
        self.timer.setInterval(FLIP_INTERVAL_MS)
        self.timer.timeout.connect(self.next_sample)

        layout = QVBoxLayout(self)
        layout.addWidget(self._toolbar())
        self.summary_label = wrapped_label()
        self.summary_label.setTextFormat(Qt.TextFormat.RichText)
        layout.addWidget(self.summary_label)

        self.grid = grid = QGridLayout()
        grid.setSpacing(em(self, 0.8))
        self.error_view = _FittedImageView("Error |truth − run|")
        self.std_view = _FittedImageView("Posterior std")
        self.samples_view = _FittedImageView("Posterior samples")
        for column, view in enumerate((self.error_view, self.std_view, self.samples_view)):
            grid.addWidget(view, 0, column, Qt.AlignmentFlag.AlignTop)
            grid.setColumnStretch(column, 1)
        for view in (self.error_view, self.samples_view):
            view.link_to(self.std_view)
        self.error_view.show_colorbar(SEQUENTIAL, (0.0, 1.0), "error (intensity)")
        self.std_view.show_colorbar(SEQUENTIAL, (0.0, 1.0), "std (intensity)")
        self.readout_label = wrapped_label(READOUT_HINT)
        grid.addWidget(self.readout_label, 1, 0, 1, 2)
        grid.addLayout(self._flip_book_row(), 1, 2)
        grid.setRowStretch(0, 1)
        layout.addLayout(grid, 0)

        self.curves_widget = QWidget()
        plots = QHBoxLayout(self.curves_widget)
        plots.setContentsMargins(0, 0, 0, 0)
        self.calibration_plot = ThemedPlot("Calibration", "k: error within ± k std", "share of pixels",
                                           legend=True)
        self.calibration_plot.setToolTip("Share of pixels whose error is within ± k std, and the share a calibrated "
                                         "(Gaussian) std would give: above it the std is too large, below too small")
        self.sparsification_plot = ThemedPlot("Sparsification", "share of pixels removed", "mean error left",
                                              legend=True)
        self.sparsification_plot.setToolTip(
            "Mean error of the pixels left after removing those with the largest std (relative to the mean error "
            "of all pixels), and after removing those with the largest error: the best any std map can do. The "
            "closer the two, the better the std points at the errors; AUSE is the area between them")
        for plot in (self.calibration_plot, self.sparsification_plot):
            plot.setXRange(0, 1)
            plots.addWidget(plot, 1)
        self.calibration_plot.setXRange(0, 4, padding=0.02)
        self.calibration_plot.setYRange(0, 1, padding=0.02)
        layout.addWidget(self.curves_widget, 1)
        layout.addStretch(0)  # takes the height the plots leave, while they are hidden

        for view in (self.error_view, self.std_view):
            view.image_item.hovered.connect(self._hovered)
            view.pixelClicked.connect(self.keep_pixel)
        for signal in (state.image_changed, state.result_removed, state.results_cleared):
            signal.connect(self._refresh_runs)
        state.result_added.connect(self._result_added)
        self._refresh_runs()

    # ------------------------------------------------------------------ widgets
    def _toolbar(self) -> QToolBar:
        bar = QToolBar()
        self.run_combo = compact_combo(QComboBox(), 16)
        self.run_combo.setToolTip("The run whose uncertainty is shown (runs with a posterior std or samples)")
        self.run_combo.currentIndexChanged.connect(lambda _index: self.show_run())
        self.calibrated_std_check = QCheckBox("Calibrated std")
        self.calibrated_std_check.setEnabled(False)
        self.calibrated_std_check.toggled.connect(lambda _on: self.show_run())
        bar.addWidget(QLabel("Run "))
        bar.addWidget(self.run_combo)
        bar.addSeparator()
        bar.addWidget(self.calibrated_std_check)
        return bar

    def _flip_book_row(self) -> QHBoxLayout:
        row = QHBoxLayout()
        self.play_button = QPushButton("Play")
        self.play_button.setCheckable(True)
        self.play_button.setToolTip("Show the posterior samples one after another")
        self.play_button.toggled.connect(self._play_toggled)
        self.sample_slider = QSlider(Qt.Orientation.Horizontal)
        self.sample_slider.setRange(1, 1)
        self.sample_slider.setPageStep(1)
        self.sample_slider.setToolTip("Which posterior sample is shown")
        self.sample_slider.valueChanged.connect(lambda _value: self._show_sample())
        self.sample_label = QLabel("")
        self.sample_label.setMinimumWidth(self.sample_label.fontMetrics().horizontalAdvance("88 / 88"))
        row.addWidget(self.play_button)
        row.addWidget(self.sample_slider, 1)
        row.addWidget(self.sample_label)
        return row

    # --------------------------------------------------------------------- API
    def current_run(self) -> RunRecord | None:
        key = self.run_combo.currentData()
        return self.state.result(int(key)) if isinstance(key, int) else None

    def select_run(self, run_id: int) -> bool:
        index = self.run_combo.findData(run_id)
        if index >= 0:
            self.run_combo.setCurrentIndex(index)
        return index >= 0

    def ground_truth_of(self, record: RunRecord) -> np.ndarray | None:
        """The ground truth of ``record``: the image its measurement was simulated from, unless the run was not scored
        against one (no PSNR: a run without a ground truth)."""
        image = self.state.image
        if record.psnr is None or image is None or image.shape != record.image.shape:
            return None
        return image

    def sample_index(self) -> int:
        """The shown posterior sample, counted from 0."""
        return self.sample_slider.value() - 1

    def next_sample(self) -> None:
        """Step the flip-book to the next sample (after the last: the first)."""
        slider = self.sample_slider
        slider.setValue(slider.minimum() if slider.value() >= slider.maximum() else slider.value() + 1)

    def keep_pixel(self, row: int, col: int) -> None:
        """Read out pixel ``(row, col)`` and keep it when the mouse leaves the maps."""
        self.kept_pixel = (row, col)
        self.set_pixel(row, col)

    def set_pixel(self, row: int | None, col: int | None = None) -> None:
        """Mark pixel ``(row, col)`` on both maps and read both values there (None: the kept pixel, or none)."""
        if row is None or col is None:
            self.pixel = self.kept_pixel
        else:
            self.pixel = (row, col)
        for view in (self.error_view, self.std_view):
            if self.pixel is not None:
                view.set_marker(*self.pixel)
            else:
                view.set_marker(None)
        self._update_readout()

    def reset_zoom(self) -> None:
        self.std_view.reset_zoom()

    def readout(self) -> dict[str, float]:
        """The values read out at :attr:`pixel`: ``error`` and ``std`` where shown."""
        shown, pixel = self.shown, self.pixel
        values: dict[str, float] = {}
        if shown is None or pixel is None:
            return values
        for name, array in (("error", shown.error), ("std", shown.std_map)):
            if array is not None and 0 <= pixel[0] < array.shape[0] and 0 <= pixel[1] < array.shape[1]:
                values[name] = float(array[pixel])
        return values

    # ---------------------------------------------------------------- internals
    def _result_added(self, record: RunRecord) -> None:
        self._refresh_runs(select=record.run_id if has_uncertainty(record) else None)

    def _refresh_runs(self, *_args, select: int | None = None) -> None:
        combo = self.run_combo
        current = select if select is not None else combo.currentData()
        combo.blockSignals(True)
        combo.clear()
        for record in self.state.results:
            if has_uncertainty(record):
                combo.addItem(f"Run {record.run_id}: {record.label()}", record.run_id)
        index = combo.findData(current)
        combo.setCurrentIndex(index if index >= 0 else combo.count() - 1)
        combo.setToolTip(combo.currentText() or "No run with a posterior std yet")
        combo.blockSignals(False)
        self.show_run()

    def show_run(self) -> None:
        """(Re)compute and show the chosen run: after a new choice, a new run, or the calibrated box toggled."""
        record = self.current_run()
        found, why_not = std_scale_of_run(record, self.state.weight_set_choice()[0]) if record is not None \
            else (None, "Choose a run that reports its posterior std")
        check = self.calibrated_std_check
        check.setEnabled(found is not None)
        check.setToolTip(f"Multiply the std map by the stored scale factor {found.description}" if found is not None
                         else why_not)
        self.std_scale = found if found is not None and check.isChecked() else None
        if record is None:
            self.shown = None
        else:
            try:
                self.shown = run_uncertainty(record, self.ground_truth_of(record),
                                             self.std_scale.scale if self.std_scale is not None else 1.0)
            except ValueError as exc:
                self.shown = None
                self.errorOccurred.emit("Uncertainty", str(exc))
        if record is None or (self.shown is not None and self.shown.samples is None):
            self.play_button.setChecked(False)
        self._show_maps()
        self._show_curves()
        self._show_samples()
        self._show_summary(record)
        if self.pixel is not None:
            self.set_pixel(*self.pixel)
        else:
            self.set_pixel(None)

    def _show_maps(self) -> None:
        shown = self.shown
        error = None if shown is None else shown.error
        std = None if shown is None else shown.std_map
        self.error_view.setVisible(shown is None or error is not None)
        self.grid.setColumnStretch(0, 1 if self.error_view.isVisibleTo(self) else 0)
        high = max([_high(a) for a in (error, std) if a is not None], default=1.0)
        levels = (0.0, high)  # one scale for both: a pixel's colours compare its error with its std
        self.error_view.set_image(error, levels=levels, colormap=SEQUENTIAL)
        self.std_view.set_image(std, levels=levels, colormap=SEQUENTIAL)
        self.error_view.show_colorbar(SEQUENTIAL, levels, "error (intensity)")
        scale = self.std_scale
        calibrated = scale is not None
        self.std_view.show_colorbar(SEQUENTIAL, levels, "calibrated std (intensity)" if calibrated
                                    else "std (intensity)")
        self.std_view.set_title("Posterior std (calibrated)" if calibrated else "Posterior std")
        self.std_view.set_caption(f"raw std × {scale.scale:.3g}" if scale is not None else
                                  ("" if std is not None or shown is None else "<i>this run has no std map</i>"))
        self.error_view.set_caption(f"mean {float(error.mean()):.3g} · max {float(error.max()):.3g}"
                                    if error is not None else "")

    def _show_curves(self) -> None:
        curves = None if self.shown is None else self.shown.curves
        self.curves_widget.setVisible(curves is not None)
        calibration, sparsification = self.calibration_plot, self.sparsification_plot
        for plot in (calibration, sparsification):
            plot.clear()
        if curves is None:
            return
        grey = pg.mkPen((150, 150, 150), width=1.5, style=Qt.PenStyle.DashLine)
        calibration.plot(curves.k, curves.coverage, pen=calibration.series_pen(0), name="this run")
        calibration.plot(curves.k, curves.gaussian, pen=grey, name="calibrated")
        calibration.place_legend_away_from(np.concatenate([curves.k, curves.k]),
                                           np.concatenate([curves.coverage, curves.gaussian]))
        sparsification.plot(curves.fraction, curves.by_std, pen=sparsification.series_pen(0),
                            name="largest std first")
        sparsification.plot(curves.fraction, curves.oracle, pen=sparsification.series_pen(1, dashed=True),
                            name="largest error first")
        sparsification.place_legend_away_from(np.concatenate([curves.fraction, curves.fraction]),
                                              np.concatenate([curves.by_std, curves.oracle]))
        finite = np.concatenate([curves.by_std, curves.oracle])
        finite = finite[np.isfinite(finite)]
        sparsification.setYRange(0, float(finite.max()) if finite.size else 1.0, padding=0.05)
        sparsification.set_title_text(f"Sparsification · AUSE {_number(curves.ause, 3)}")

    def _show_samples(self) -> None:
        samples = None if self.shown is None else self.shown.samples
        count = 0 if samples is None else len(samples)
        slider = self.sample_slider
        slider.blockSignals(True)
        slider.setRange(1, max(count, 1))
        slider.blockSignals(False)
        for widget in (self.play_button, slider):
            widget.setEnabled(count > 1)
        self._show_sample()

    def _show_sample(self) -> None:
        samples = None if self.shown is None else self.shown.samples
        if samples is None:
            self.samples_view.set_image(None)
            self.samples_view.set_title("Posterior samples")
            self.samples_view.set_caption("<i>this run kept no samples</i>" if self.shown is not None else "")
            self.sample_label.setText("")
            return
        index = min(self.sample_index(), len(samples) - 1)
        self.samples_view.set_image(samples[index], levels=(0.0, 1.0), colormap=GREY)
        self.samples_view.set_title(f"Posterior sample {index + 1} of {len(samples)}")
        scale = self.shown.scale if self.shown is not None else 1.0
        self.samples_view.set_caption(f"spread about the samples' mean × {scale:.3g} (calibrated)" if scale != 1.0
                                      else "")
        self.sample_label.setText(f"{index + 1} / {len(samples)}")

    def _show_summary(self, record: RunRecord | None) -> None:
        shown = self.shown
        if record is None or shown is None:
            self.summary_label.setText(
                "No run with a posterior std yet: run VAE mean + structured covariance, mean + diagonal covariance "
                "or latent VI with posterior samples above 0." if record is None else "")
            return
        curves = shown.curves
        if curves is None:
            why = "no ground truth" if shown.error is None else "no std map"
            self.summary_label.setText(f"This run has {why}: its std map and posterior samples alone are shown."
                                       if why == "no ground truth" else
                                       "This run has no std map: its posterior samples alone are shown.")
            return
        within = ", ".join(f"{100 * curves.headline[k]:.0f} %" for k in ("1", "2", "3"))
        scale = f" (std × {shown.scale:.3g})" if shown.scale != 1.0 else ""
        self.summary_label.setText(
            f"Error within ±1, ±2, ±3 std{scale}: <b>{within}</b> of the pixels (calibrated: 68, 95, 99.7 %). "
            f"Std and error correlate at <b>{_number(curves.correlation, 2)}</b>; AUSE "
            f"<b>{_number(curves.ause, 3)}</b> (0: the std ranks the pixels exactly as their errors).")

    def _hovered(self, x: float, y: float) -> None:
        if math.isnan(x) or math.isnan(y):
            self.set_pixel(None)
            return
        image = self.std_view.image() if self.std_view.image() is not None else self.error_view.image()
        row, col = int(math.floor(y)), int(math.floor(x))
        if image is not None and 0 <= row < image.shape[0] and 0 <= col < image.shape[1]:
            self.set_pixel(row, col)

    def _update_readout(self) -> None:
        values = self.readout()
        if self.pixel is None or not values:
            self.readout_label.setText(READOUT_HINT if self.shown is not None else "")
            return
        row, col = self.pixel
        parts = [f"{name} {value:.4f}" for name, value in values.items()]
        if "error" in values and values.get("std", 0.0) > 0:
            parts.append(f"error = {values['error'] / values['std']:.2f} std")
        kept = " (kept)" if self.pixel == self.kept_pixel else ""
        self.readout_label.setText(f"Pixel row {row}, col {col}{kept}: " + " · ".join(parts))

    def _play_toggled(self, on: bool) -> None:
        self.play_button.setText("Pause" if on else "Play")
        if on:
            self.timer.start()
        else:
            self.timer.stop()

    def hideEvent(self, event) -> None:  # noqa: N802 (Qt API)
        self.play_button.setChecked(False)  # no flipping out of sight
        super().hideEvent(event)


def _high(array: np.ndarray) -> float:
    high = float(np.percentile(array, 99.5)) if array.size else 0.0
    return high if high > 0 else 1.0


def _number(value: float, digits: int) -> str:
    return f"{value:.{digits}f}" if math.isfinite(value) else "n/a"
