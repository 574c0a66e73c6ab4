"""Covariance inspector: what the structured-covariance VAE has learned about an image.

For the chosen image ``x`` (ground truth, adjoint, or a finished run) the latent is ``z = mu(x)`` from the encoder
(or the run's own ``extras['latent']``); the decoder gives the mean ``G(z)`` and the sparse Cholesky factor
``L(z)`` of the precision, ``Sigma(z)^{-1} = L L^T`` (paper, Sec. 3). Clicking (or dragging over) a pixel ``i``
shows row ``i`` of ``Sigma`` as correlations ``Sigma_ij / sqrt(Sigma_ii Sigma_jj)`` on the project's diverging map
(white exactly at 0, levels ``[-1, 1]``, exactly 1 at the star), over the whole image and magnified around the
pixel (optionally over the anatomy). Also shown, each with a colour bar in image-intensity units (images are
scaled to [0, 1]): the variance map ``diag(Sigma)``, the posterior standard deviation of a run that reports one
(``extras['std_map']``: mean+covar, latent-vi), and the decoder mean ``G(z)`` or residual samples
``G(z) + L^{-T} u`` with ``u ~ N(0, I)``.

A run's own latent is used only where it lives in the covariance model's latent space (mean+covar, latent-vi with
the covar VAE); other runs (range search, the flow) are encoded like any image. While "Follow new runs" is on, each
new finished run that reports a ``std_map`` or a ``latent`` becomes the inspected image; choosing an image in the
selector yourself turns following off, so the choice stays until you turn it on again.

The state and the decisions (which source, following, when to load and decode, coalescing, stale results, the
calibration factor) live in the Qt-free :class:`~genreg_viewer.application.covariance.CovarianceInspector`; this
widget renders its events and forwards clicks. All model work runs on a worker thread. A run is decoded on the
reconstruction worker as soon as it ends (:func:`~genreg_viewer.application.covariance.prepare_for_run`), so its
first click costs two triangular solves like every later one. Drags are throttled (``superqt.qthrottled``, one
request per 25 ms) and coalesced by completion: while one row is being computed only the newest requested pixel is
kept, and it is sent as soon as the worker is free.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from PyQt6.QtCore import QSignalBlocker, Qt, pyqtSignal
from PyQt6.QtGui import QAction
from PyQt6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QGridLayout,
    QLabel,
    QToolBar,
    QVBoxLayout,
    QWidget,
)
from superqt.utils import qthrottled

from ...application.covariance import (
    INSPECTABLE_ARRAYS,
    MODEL_KIND,
    CovarianceInspector,
    InspectedSource,
    PreparedCovariance,
    ResidualSamples,
    StdDisplay,
    covariance_latent,
    is_inspectable,
    load_covariance_model,
)
from ...application.experiment import ExperimentState
from ...render import diverging_rgb
from ..widgets.controls import compact_combo, int_spin, push_button, wrapped_label
from ..widgets.image_view import DIVERGING, SEQUENTIAL, ImageView, _FitState, em
from ..workers import WorkerThread

__all__ = ["CovariancePanel", "INSPECTABLE_ARRAYS", "MODEL_KIND", "covariance_latent", "is_inspectable",
           "load_covariance_model"]

#: half-width of the magnified neighbourhood, in pixels (the zoom view shows ``2 * radius + 1`` pixels a side)
ZOOM_RADIUS = 8
#: how often a drag may ask for a new row (ms); the worker coalesces what comes faster
DRAG_THROTTLE_MS = 25
#: weight of the correlation colours over the grey anatomy when "Over anatomy" is on
OVERLAY_ALPHA = 0.7


class CovariancePanel(QWidget):
    """Click an image to see the covariance model's correlation map at that pixel: the view of a
    :class:`~genreg_viewer.application.covariance.CovarianceInspector` (:attr:`inspector`)."""

    errorOccurred = pyqtSignal(str, str)
    #: a correlation row is on screen: ``(row, col)`` of its pixel
    rowShown = pyqtSignal(int, int)

    def __init__(self, state: ExperimentState, parent: QWidget | None = None):
        super().__init__(parent)
        self.state = state
        self.worker = WorkerThread("covariance", self)
        self.inspector = CovarianceInspector(state, lambda task: self.worker.submit(task, task.function))
        self.worker.done.connect(self.inspector.task_done)
        self.worker.failed.connect(self.inspector.task_failed)

        layout = QVBoxLayout(self)
        layout.addWidget(self._toolbar())
        self.status_label = wrapped_label()
        layout.addWidget(self.status_label)
        grid = QGridLayout()
        grid.setSpacing(em(self, 0.8))
        self.source_view = ImageView("Image (click or drag)")
        self.correlation_view = ImageView("Correlation with ★")
        self.zoom_view = ImageView(f"Neighbourhood (±{ZOOM_RADIUS} px)")
        self.variance_view = ImageView("Variance diag Σ(z)")
        self.std_view = ImageView("Posterior std of the run")
        self.mean_view = ImageView("Decoder mean  G(z)")
        self.samples_view = self.mean_view  #: one view shows the mean or the residual samples (see the combo)
        views = (self.source_view, self.correlation_view, self.zoom_view,
                 self.variance_view, self.std_view, self.mean_view)
        for index, view in enumerate(views):
            grid.addWidget(view, index // 3, index % 3)
        grid.addLayout(self._samples_row(), 2, 2)
        grid.addWidget(self._calibrated_std_check(), 2, 1)
        for column in range(3):
            grid.setColumnStretch(column, 1)
        grid.setRowStretch(0, 1)
        grid.setRowStretch(1, 1)
        for view in (self.correlation_view, self.variance_view, self.std_view):
            view.link_to(self.source_view)
        self.zoom_view._fit = _FitState()  # its own range: the neighbourhood of the pixel
        self.zoom_view._fit.auto = False
        self.correlation_view.show_colorbar(DIVERGING, (-1.0, 1.0), "correlation")
        self.zoom_view.show_colorbar(DIVERGING, (-1.0, 1.0), "correlation")
        self.variance_view.show_colorbar(SEQUENTIAL, (0.0, 1.0), "variance (intensity²)")
        self.std_view.show_colorbar(SEQUENTIAL, (0.0, 1.0), "std (intensity)")
        layout.addLayout(grid, 1)
        self.source_view.image_item.drag_picking = True
        self._throttled_drag = qthrottled(self.request_pixel, timeout=DRAG_THROTTLE_MS, leading=True)
        self.source_view.pixelClicked.connect(self.request_pixel)
        self.source_view.image_item.pixelDragged.connect(lambda r, c, _finished: self._throttled_drag(r, c))
        self.correlation_view.pixelClicked.connect(self.request_pixel)
        self.zoom_view.pixelClicked.connect(self.request_pixel)

        inspector = self.inspector
        inspector.sources_changed.connect(self._show_sources)
        inspector.following_changed.connect(self._show_following)
        inspector.source_changed.connect(self._show_source)
        inspector.std_changed.connect(self._show_std)
        inspector.prepared_changed.connect(self._show_prepared)
        inspector.row_shown.connect(self._show_row)
        inspector.samples_drawn.connect(self._show_samples)
        inspector.status.connect(self._show_status)
        inspector.model_failed.connect(self._show_model_failed)
        inspector.failed.connect(lambda message: self.errorOccurred.emit("Covariance inspector", message))
        inspector.refresh_sources()
        from ..calibration_plot import add_calibration_plot  # std-map calibration curves (genreg calibrate)

        self.calibration_plot = add_calibration_plot(self, layout, self.image_weight_set)

    # ------------------------------------------------------------------ toolbar
    def _toolbar(self) -> QToolBar:
        bar = QToolBar()
        bar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.source_combo = compact_combo(QComboBox(), 16)
        self.source_combo.setToolTip("The image whose latent code defines the covariance")
        self.source_combo.currentIndexChanged.connect(lambda _i: self.inspector.select(self.source_combo.currentData()))
        self.source_combo.activated.connect(lambda _i: self.inspector.set_following(False))  # the user's own choice
        self.follow_action = QAction("Follow new runs", self)
        self.follow_action.setCheckable(True)
        self.follow_action.setChecked(True)
        self.follow_action.setToolTip("Inspect each new finished run that reports a posterior std or a latent; "
                                      "choosing an image yourself turns this off")
        self.follow_action.toggled.connect(lambda on: self.inspector.set_following(on))
        self.overlay_check = QCheckBox("Over anatomy")
        self.overlay_check.setToolTip("Show the correlation map over the inspected image (faint grey)")
        self.overlay_check.toggled.connect(self._show_correlation)
        bar.addWidget(QLabel("Image "))
        bar.addWidget(self.source_combo)
        bar.addAction(self.follow_action)
        bar.addSeparator()
        bar.addWidget(self.overlay_check)
        return bar

    def _calibrated_std_check(self) -> QCheckBox:
        """"Calibrated std" under the std view: off (the raw map) by default."""
        self.calibrated_std_check = QCheckBox("Calibrated std")
        self.calibrated_std_check.setEnabled(False)
        self.calibrated_std_check.toggled.connect(lambda on: self.inspector.set_calibrated(on))
        return self.calibrated_std_check

    def _samples_row(self) -> QGridLayout:
        """Mean or samples, and the samples' count, seed and Draw button, in two short rows (the column stays as
        narrow as its neighbours)."""
        row = QGridLayout()
        self.mean_combo = QComboBox()
        self.mean_combo.addItem("Decoder mean", "mean")
        self.mean_combo.addItem("Residual samples", "samples")
        self.mean_combo.setToolTip("Show the decoder mean G(z) or draws G(z) + L⁻ᵀu from the covariance model")
        self.mean_combo.currentIndexChanged.connect(self._mean_mode_chosen)
        self.count_spin = int_spin(1, 16, 4)
        self.count_spin.setToolTip("Number of residual samples")
        self.seed_spin = int_spin(0, 99_999, 0)
        self.seed_spin.setToolTip("Seed of the residual samples")
        self.count_spin.valueChanged.connect(lambda count: setattr(self.inspector, "sample_count", count))
        self.seed_spin.valueChanged.connect(lambda seed: setattr(self.inspector, "sample_seed", seed))
        self.sample_button = push_button("Draw", self._draw_clicked, "Draw new residual samples")
        row.addWidget(self.mean_combo, 0, 0, 1, 3)
        row.addWidget(self.sample_button, 0, 3)
        for column, widget in enumerate((QLabel("Draws"), self.count_spin, QLabel("Seed"), self.seed_spin)):
            row.addWidget(widget, 1, column)
        return row

    # --------------------------------------------------------------------- API
    @property
    def model(self) -> Any:
        """The loaded covariance model (None while loading or before)."""
        return self.inspector.model

    @model.setter
    def model(self, model: Any) -> None:
        self.inspector.model = model

    @property
    def model_error(self) -> str | None:
        """Why the covariance model could not be loaded, or None."""
        return self.inspector.model_error

    @model_error.setter
    def model_error(self, message: str | None) -> None:
        self.inspector.model_error = message

    @property
    def model_loader(self):
        """Loads the covariance model on the worker thread (tests inject a small model)."""
        return self.inspector.model_loader

    @model_loader.setter
    def model_loader(self, loader) -> None:
        self.inspector.model_loader = loader

    @property
    def prepared(self) -> PreparedCovariance | None:
        """The decoded covariance of the inspected image, or None while it is being decoded."""
        return self.inspector.prepared

    @property
    def pixel(self) -> tuple[int, int] | None:
        """The pixel whose correlation row is shown."""
        return self.inspector.pixel

    @property
    def correlation(self) -> np.ndarray | None:
        """The shown correlation row, (H, W) in [-1, 1]."""
        return self.inspector.correlation

    @property
    def std_scale(self):
        """The std scale factor applied to the shown std map (None: the raw map)."""
        return self.inspector.std.scale

    def ensure_model(self) -> None:
        """Start loading the covariance model (once) on the worker thread."""
        self.inspector.ensure_model()

    def image_weight_set(self):
        """The weight set of the current image (the chosen set, or in auto mode the one trained for its kind)."""
        return self.inspector.image_weight_set()

    def following(self) -> bool:
        """Whether each new inspectable run (see :func:`is_inspectable`) becomes the inspected image."""
        return self.inspector.following

    def inspect_image(self, image: np.ndarray) -> None:
        """Inspect an arbitrary image (e.g. a comparison tile); an explicit choice, so new runs do not replace it."""
        self.inspector.inspect_image(image)

    def request_pixel(self, row: int, col: int) -> None:
        """Show the correlation row of pixel ``(row, col)`` (coalesced while a row is being computed)."""
        for view in (self.source_view, self.correlation_view, self.zoom_view):
            view.set_marker(row, col)
        self.inspector.request_pixel(row, col)

    def draw_samples(self) -> None:
        """Draw residual samples with the count and seed of the spin boxes."""
        self.inspector.draw_samples(self.count_spin.value(), self.seed_spin.value())

    def reset_model(self, *_args) -> None:
        """Forget the loaded model (the weight set changed): the source is decoded again by the new one."""
        self.inspector.reset_model()

    def shutdown(self, timeout_ms: int = 5000) -> bool:
        """Stop the worker (waiting up to ``timeout_ms``; 0: not at all); its late results are dropped."""
        return self.worker.shutdown(timeout_ms)

    # ------------------------------------------------------------------ rendering the inspector's events
    def _show_sources(self) -> None:
        """The selector lists the inspector's sources and shows its chosen one."""
        combo = self.source_combo
        items = self.inspector.sources()
        with QSignalBlocker(combo):
            if [(combo.itemData(i), combo.itemText(i)) for i in range(combo.count())] != items:
                combo.clear()
                for key, label in items:
                    combo.addItem(label, key)
            combo.setCurrentIndex(combo.findData(self.inspector.key))
        combo.setToolTip(f"The image whose latent code defines the covariance: {combo.currentText()}")

    def _show_source(self, source: InspectedSource) -> None:
        """A new image: shown, its decoded views cleared until the inspector has decoded it."""
        self.source_view.set_image(source.image)
        for view in (self.correlation_view, self.zoom_view, self.variance_view, self.mean_view):
            view.set_image(None)

    def _show_std(self, display: StdDisplay) -> None:
        """The inspected run's posterior std map, raw or calibrated, with its colour bar and the check box's state."""
        check = self.calibrated_std_check
        found = display.available
        check.setEnabled(found is not None)
        check.setToolTip(f"Multiply the std map by the stored scale factor {found.description}" if found is not None
                         else display.why_not)
        levels = _levels(display.std_map)
        self.std_view.set_image(display.std_map, levels=levels, colormap=SEQUENTIAL)
        if display.std_map is None:
            self.std_view.set_caption("<i>choose a run that reports its posterior std (mean+covar, latent-vi)</i>")
            return
        calibrated = display.scale is not None
        self.std_view.show_colorbar(SEQUENTIAL, levels, "calibrated std (intensity)" if calibrated else
                                    "std (intensity)")
        self.std_view.set_caption(f"calibrated: raw std x {display.scale.scale:.3g}" if display.scale is not None
                                  else "")

    def _show_prepared(self, prepared: PreparedCovariance) -> None:
        variance = prepared.variance
        self.variance_view.set_image(variance, levels=_levels(variance), colormap=SEQUENTIAL)
        self.variance_view.show_colorbar(SEQUENTIAL, _levels(variance), "variance (intensity²)")
        self.variance_view.set_caption(f"max {float(variance.max()):.3g} · mean {float(variance.mean()):.3g}")
        self._show_mean_or_samples()

    def _show_following(self, on: bool) -> None:
        self.follow_action.setChecked(on)

    def _show_status(self, text: str) -> None:
        self.status_label.setText(text)

    def _show_model_failed(self, message: str) -> None:
        self.status_label.setText(f"<b>The covariance model is not available.</b> {message}")
        self.correlation_view.set_caption("<i>no covariance model</i>")

    def _mean_mode_chosen(self, *_args) -> None:
        self.inspector.set_show_samples(self.mean_combo.currentData() == "samples")
        self._show_mean_or_samples()

    def _draw_clicked(self) -> None:
        with QSignalBlocker(self.mean_combo):
            self.mean_combo.setCurrentIndex(self.mean_combo.findData("samples"))
        self.draw_samples()
        self._show_mean_or_samples()

    def _show_samples(self, _samples: ResidualSamples) -> None:
        if self.mean_combo.currentData() == "samples":
            self._show_mean_or_samples()

    def _show_mean_or_samples(self) -> None:
        view, inspector = self.mean_view, self.inspector
        if self.mean_combo.currentData() == "samples":
            view.set_title("Residual samples  G(z) + L⁻ᵀu")
            samples = inspector.samples
            if samples is None:
                view.set_image(None)
                view.set_caption("")
                return
            view.set_image(samples.mosaic, levels=(0.0, 1.0))
            view.set_caption(f"{samples.count} draws, seed {samples.seed}")
        else:
            view.set_title("Decoder mean  G(z)")
            view.set_image(None if inspector.prepared is None else inspector.prepared.mean_image())
            view.set_caption("")

    def _show_row(self, row: int, col: int, _correlation: np.ndarray) -> None:
        self._show_correlation()
        self.rowShown.emit(row, col)

    def _show_correlation(self, *_args) -> None:
        correlation, pixel = self.inspector.correlation, self.inspector.pixel
        if correlation is None or pixel is None:
            return
        image = self.source_view.image()
        if self.overlay_check.isChecked() and image is not None and image.shape == correlation.shape:
            grey = np.clip(image, 0, 1)[..., None]
            shown = OVERLAY_ALPHA * diverging_rgb(correlation, 1.0) + (1 - OVERLAY_ALPHA) * grey
            for view in (self.correlation_view, self.zoom_view):
                view.set_rgb_image(shown.astype(np.float32))
        else:
            for view in (self.correlation_view, self.zoom_view):
                view.set_image(correlation, levels=(-1.0, 1.0), colormap=DIVERGING)
        row, col = pixel
        height, width = correlation.shape
        self.correlation_view.set_caption(f"pixel (row {row}, col {col}) · white = 0")
        self.zoom_view.view_box.setRange(xRange=(col - ZOOM_RADIUS, col + ZOOM_RADIUS + 1),
                                         yRange=(row - ZOOM_RADIUS, row + ZOOM_RADIUS + 1), padding=0)
        right = correlation[row, min(col + 1, width - 1)] if col + 1 < width else math.nan
        below = correlation[min(row + 1, height - 1), col] if row + 1 < height else math.nan
        self.zoom_view.set_caption(f"right {right:+.2f} · below {below:+.2f}")

    def showEvent(self, event) -> None:  # noqa: N802 (Qt API)
        super().showEvent(event)
        self.inspector.set_active(True)

    def hideEvent(self, event) -> None:  # noqa: N802 (Qt API)
        super().hideEvent(event)
        self.inspector.set_active(False)


def _levels(array: np.ndarray | None) -> tuple[float, float]:
    if array is None or array.size == 0:
        return 0.0, 1.0
    high = float(np.percentile(array, 99.5))
    return 0.0, high if high > 0 else 1.0
