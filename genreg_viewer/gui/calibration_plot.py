"""Calibration plot of the posterior std maps, shown in the Covariance tab.

Reads the active weight set's ``tuned/calibration.json`` (written by ``genreg calibrate --fit-on VAL --write``,
:mod:`genreg_viewer.evaluation.calibration`) and plots, for each method and setting stored there, the empirical
coverage of ``|x - x_hat| <= k std`` on the validation images against the Gaussian ``P(|Z| <= k)`` for k = 0..4:
the raw std map (solid) and the map times the fitted factor (dashed). The grey diagonal is a calibrated map; a curve
above it means the std is too large, below it too small. Redrawn whenever the tab is shown (the weight set may have
changed). No numbers are computed here.
"""

from __future__ import annotations

from typing import Any, Callable

import pyqtgraph as pg
from PyQt6.QtWidgets import QLabel, QToolButton, QVBoxLayout, QWidget

from ..evaluation.calibration import calibration_path, gaussian_coverage, read_calibration
from .widgets.controls import wrapped_label
from .widgets.plots import ThemedPlot


class CalibrationPlot(QWidget):
    """A folding plot: the stored calibration curves of the active weight set."""

    def __init__(self, parent: QWidget | None = None, weight_set_of: Callable[[], Any] | None = None):
        super().__init__(parent)
        #: the weight set whose calibration is shown (default: the active one)
        self.weight_set_of = weight_set_of
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.toggle = QToolButton()
        self.toggle.setText("Std-map calibration ▸")
        self.toggle.setCheckable(True)
        self.toggle.setToolTip("Coverage of |x - x̂| ≤ k·std on validation images (genreg calibrate)")
        self.toggle.toggled.connect(self._toggled)
        self.plot = ThemedPlot("", "Gaussian coverage P(|Z| ≤ k)", "empirical coverage", legend=True)
        self.plot.setXRange(0, 1)
        self.plot.setYRange(0, 1)
        self.note: QLabel = wrapped_label()
        self.plot.setVisible(False)
        self.note.setVisible(False)
        layout.addWidget(self.toggle)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.note)
        #: the curves drawn: ``(method, mask, sigma, "raw" | "scaled")``
        self.curves: list[tuple[str, str, float, str]] = []

    def _toggled(self, on: bool) -> None:
        self.toggle.setText("Std-map calibration ▾" if on else "Std-map calibration ▸")
        self.plot.setVisible(on)
        self.note.setVisible(on)
        if on:
            self.refresh()

    def showEvent(self, event) -> None:  # noqa: N802 (Qt API)
        super().showEvent(event)
        if self.toggle.isChecked():
            self.refresh()

    def refresh(self) -> None:
        """Redraw from the calibration table of the inspected image's weight set (the chosen set, or in auto mode
        the one trained for the image's kind)."""
        from ..weight_sets import active_weight_set

        weight_set = self.weight_set_of() if self.weight_set_of is not None else active_weight_set()
        self.plot.clear()
        self.curves = []
        try:
            table = read_calibration(weight_set)
        except ValueError as exc:
            table, problem = {}, str(exc)
        else:
            problem = ""
        self.plot.plot([0, 1], [0, 1], pen=pg.mkPen((150, 150, 150), width=1), name="calibrated")
        index = 0
        for method, entries in sorted(table.items()):
            for entry in entries:
                for label, dashed in (("validation_raw", False), ("validation_scaled", True)):
                    curve = entry.get(label)
                    if not curve:
                        continue
                    nominal = [gaussian_coverage(float(k)) for k in curve["k"]]
                    name = (f"{method} {entry['mask']} σ {entry['sigma']:g}" if not dashed
                            else f"  × {float(entry['scale']):.2g}")
                    self.plot.plot(nominal, curve["coverage"], pen=self.plot.series_pen(index, dashed=dashed),
                                   name=name)
                    self.curves.append((method, entry["mask"], float(entry["sigma"]), label[len("validation_"):]))
                index += 1
        if problem:
            self.note.setText(problem)
        elif not self.curves:
            self.note.setText(f"No calibration stored for the weight set {weight_set.name!r} "
                              f"({calibration_path(weight_set)}): run genreg calibrate TEST --fit-on VAL --write.")
        else:
            fitted = sorted({e.get("fitted_on", "?") for entries in table.values() for e in entries})
            self.note.setText(f"Weight set {weight_set.name}: coverage on validation images ({'; '.join(fitted)}); "
                              "solid: raw std map, dashed: times the fitted factor (applied only on request).")


def add_calibration_plot(panel: QWidget, layout, weight_set_of: Callable[[], Any] | None = None) -> CalibrationPlot:
    """Add a (folded) :class:`CalibrationPlot` at the end of ``layout`` of ``panel``: the Covariance tab's hook
    (``weight_set_of``: the inspected image's weight set)."""
    plot = CalibrationPlot(panel, weight_set_of)
    layout.addWidget(plot)
    return plot
