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

All model work runs on a worker thread. A run is decoded on the reconstruction worker as soon as it ends
(:func:`~genreg_viewer.application.covariance.prepare_for_run`), so its first click costs two triangular solves like
every later one. Drags are throttled (``superqt.qthrottled``, one request per 25 ms) and coalesced by completion:
while one row is being computed only the newest requested pixel is kept, and it is sent as soon as the worker is
free.
"""

from __future__ import annotations

import math

import numpy as np
from PyQt6.QtCore import Qt, pyqtSignal
from PyQt6.QtGui import QAction
from PyQt6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QGridLayout,
    QLabel,
    QSpinBox,
    QToolBar,
    QVBoxLayout,
    QWidget,
)
from superqt.utils import qthrottled

from ...application.covariance import (
    INSPECTABLE_ARRAYS,
    MODEL_KIND,
    covariance_latent,
    is_inspectable,
    load_covariance_model,
    prepare_covariance,
    residual_samples,
)
from ...application.experiment import ExperimentState
from ...application.uncertainty import raw_std_map, std_scale_of_run
from ...data.phantom import phantom_grid
from ...render import diverging_rgb
from ..widgets.controls import compact_combo, push_button, wrapped_label
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
    """Click an image to see the covariance model's correlation map at that pixel."""

    errorOccurred = pyqtSignal(str, str)
    #: a correlation row is on screen: ``(row, col)`` of its pixel
    rowShown = pyqtSignal(int, int)

    def __init__(self, state: ExperimentState, parent: QWidget | None = None):
        super().__init__(parent)
        self.state = state
        self.worker = WorkerThread("covariance", self)
        self.worker.done.connect(self._done)
        self.worker.failed.connect(self._failed)
        self.model = None
        self.model_error: str | None = None
        self.prepared: dict | None = None  #: latent, mean, Cholesky factor and variances of the shown source
        self._source_shown: tuple | None = None  #: (key, image, latent) that ``prepared`` belongs to
        self._token = 0  #: increases with every new source; worker results carry the token they were made for
        self._preparing: int | None = None  #: token of the decoding in flight
        self.pixel: tuple[int, int] | None = None  #: the pixel whose row is shown (or computed)
        self.correlation: np.ndarray | None = None  #: the shown correlation row, (H, W) in [-1, 1]
        self._pending_pixel: tuple[int, int] | None = None
        self._row_busy = False
        self._loading = False
        self._custom_image: np.ndarray | None = None
        self._samples: np.ndarray | None = None  #: mosaic of the last residual samples
        self._samples_count, self._samples_seed = 0, 0
        self.model_loader = load_covariance_model  #: called on the worker thread (tests inject a small model)
        self._model_weight_set: str | None = None  #: the weight set of the model loaded or loading

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
        state.image_changed.connect(self._image_changed_weights)  # before the sources refresh
        for signal in (state.image_changed, state.result_removed, state.results_cleared):
            signal.connect(self._refresh_sources)
        state.result_added.connect(self._result_added)
        state.measurement_changed.connect(self._measurement_changed)
        self._refresh_sources()
        from ..calibration_plot import add_calibration_plot  # std-map calibration curves (genreg calibrate)

        self.calibration_plot = add_calibration_plot(self, layout, self.image_weight_set)

    # ------------------------------------------------------------------ toolbar
    def _toolbar(self) -> QToolBar:
        bar = QToolBar()
        bar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.source_combo = compact_combo(QComboBox(), 16)
        self.source_combo.setToolTip("The image whose latent code defines the covariance")
        self.source_combo.currentIndexChanged.connect(self._source_changed)
        self.source_combo.activated.connect(self._source_chosen)  # only the user's own choices
        self.follow_action = QAction("Follow new runs", self, checkable=True, checked=True)
        self.follow_action.setToolTip("Inspect each new finished run that reports a posterior std or a latent; "
                                      "choosing an image yourself turns this off")
        self.follow_action.toggled.connect(self._follow_toggled)
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
        self.calibrated_std_check.toggled.connect(lambda _on: self._show_std())
        #: the stored std scale factor for the inspected run (None: none applies); shown only while checked
        self.std_scale = None
        return self.calibrated_std_check

    def _samples_row(self) -> QGridLayout:
        """Mean or samples, and the samples' count, seed and Draw button, in two short rows (the column stays as
        narrow as its neighbours)."""
        row = QGridLayout()
        self.mean_combo = QComboBox()
        self.mean_combo.addItem("Decoder mean", "mean")
        self.mean_combo.addItem("Residual samples", "samples")
        self.mean_combo.setToolTip("Show the decoder mean G(z) or draws G(z) + L⁻ᵀu from the covariance model")
        self.mean_combo.currentIndexChanged.connect(self._show_mean_or_samples)
        self.count_spin = QSpinBox(minimum=1, maximum=16, value=4)
        self.count_spin.setToolTip("Number of residual samples")
        self.seed_spin = QSpinBox(minimum=0, maximum=99_999, value=0)
        self.seed_spin.setToolTip("Seed of the residual samples")
        self.sample_button = push_button("Draw", self._draw_clicked, "Draw new residual samples")
        row.addWidget(self.mean_combo, 0, 0, 1, 3)
        row.addWidget(self.sample_button, 0, 3)
        for column, widget in enumerate((QLabel("Draws"), self.count_spin, QLabel("Seed"), self.seed_spin)):
            row.addWidget(widget, 1, column)
        return row

    # --------------------------------------------------------------------- API
    def ensure_model(self) -> None:
        """Start loading the covariance model (once) on the worker thread."""
        if self.model is None and not self._loading and self.model_error is None:
            self._loading = True
            self.status_label.setText("Loading the covariance model…")
            weight_set = self.image_weight_set()
            self._model_weight_set = weight_set.name
            loader = self.model_loader
            self.worker.submit("model", (lambda: loader(weight_set)) if loader is load_covariance_model else loader)

    def image_weight_set(self):
        """The weight set of the current image (the chosen set, or in auto mode the one trained for its kind)."""
        return self.state.weight_set_choice()[0]

    def _image_changed_weights(self) -> None:
        """Auto mode: an image of another kind (scan vs phantom) needs the other set's model."""
        if self._model_weight_set is not None and self.image_weight_set().name != self._model_weight_set:
            self.reset_model()

    def following(self) -> bool:
        """Whether each new inspectable run (see :func:`is_inspectable`) becomes the inspected image."""
        return self.follow_action.isChecked()

    def inspect_image(self, image: np.ndarray) -> None:
        """Inspect an arbitrary image (e.g. a comparison tile); an explicit choice, so new runs do not replace it."""
        self.follow_action.setChecked(False)
        self._custom_image = np.asarray(image, dtype=np.float32)
        index = self.source_combo.findData("custom")
        if index < 0:
            self.source_combo.addItem("Image from the comparison", "custom")
            index = self.source_combo.count() - 1
        self.source_combo.setCurrentIndex(index)
        self._source_changed()

    def request_pixel(self, row: int, col: int) -> None:
        """Show the correlation row of pixel ``(row, col)`` (coalesced while a row is being computed)."""
        self._pending_pixel = (row, col)
        for view in (self.source_view, self.correlation_view, self.zoom_view):
            view.set_marker(row, col)
        self._dispatch_row()

    def draw_samples(self) -> None:
        if self.prepared is None:
            self.status_label.setText("The covariance model is not ready")
            return
        prepared, count, seed = self.prepared, self.count_spin.value(), self.seed_spin.value()
        self.worker.submit(f"samples:{self._token}", lambda: residual_samples(prepared, count, seed))

    def shutdown(self, timeout_ms: int = 5000) -> bool:
        """Stop the worker (waiting up to ``timeout_ms``; 0: not at all); its late results are dropped."""
        return self.worker.shutdown(timeout_ms)

    # ---------------------------------------------------------------- internals
    def _source(self) -> tuple[str, np.ndarray | None, np.ndarray | None, np.ndarray | None]:
        """``(key, image, latent, std_map)`` of the chosen source."""
        key, image, latent, std_map, _prepared = self._source_details()
        return key, image, latent, std_map

    def _source_details(self) -> tuple:
        """``(key, image, latent, std_map, prepared)``: :meth:`_source` and the decoding the run brought along
        (None unless it was made by this panel's model: the active weight set's)."""
        key = self.source_combo.currentData()
        if key == "truth":
            return key, self.state.image, None, None, None
        if key == "adjoint":
            return key, self.state.adjoint, None, None, None
        if key == "custom":
            return key, self._custom_image, None, None, None
        if isinstance(key, str) and key.startswith("run:"):
            record = self.state.result(int(key[4:]))
            if record is not None:
                # a latent belongs to the weights it was found with: after a switch of weight set, encode instead
                current = self.image_weight_set().name
                same_weights = record.setting.get("weights", current) == current
                latent = covariance_latent(record) if same_weights else None
                own_model = same_weights and self.model_loader is load_covariance_model
                return (key, record.image, latent, record.arrays.get("std_map"),
                        record.covariance if own_model else None)
        return "", None, None, None, None

    def _latest_inspectable_key(self) -> str | None:
        latest = next((r for r in reversed(self.state.results) if is_inspectable(r)), None)
        return None if latest is None else f"run:{latest.run_id}"

    def _result_added(self, record) -> None:
        follow = self.following() and is_inspectable(record)
        self._refresh_sources(select=f"run:{record.run_id}" if follow else None)

    def _follow_toggled(self, on: bool) -> None:
        key = self._latest_inspectable_key() if on else None
        index = self.source_combo.findData(key) if key is not None else -1
        if index >= 0:
            self.source_combo.setCurrentIndex(index)

    def _source_chosen(self, _index: int) -> None:
        self.follow_action.setChecked(False)

    def _refresh_sources(self, *_args, select: str | None = None) -> None:
        """Rebuild the source list, keeping the shown source (or showing ``select``) where it still exists."""
        combo = self.source_combo
        current = select if select is not None else combo.currentData()
        combo.blockSignals(True)
        combo.clear()
        if self.state.image is not None:
            combo.addItem("Ground truth", "truth")
            combo.addItem("Zero-filled adjoint", "adjoint")
            for record in self.state.results:
                combo.addItem(f"Run {record.run_id}: {record.label()}", f"run:{record.run_id}")
        if self._custom_image is not None:
            combo.addItem("Image from the comparison", "custom")
        index = combo.findData(current)
        combo.setCurrentIndex(index if index >= 0 else 0)
        combo.setToolTip(f"The image whose latent code defines the covariance: {combo.currentText()}")
        combo.blockSignals(False)
        self._source_changed()

    def _measurement_changed(self) -> None:
        if self.source_combo.currentData() == "adjoint":
            self._source_changed()

    def _source_changed(self, *_args) -> None:
        key, image, latent, std_map, prepared = self._source_details()
        self.source_view.set_image(image)
        self._show_std()
        source = (key, image, latent)
        if self._source_shown is not None and all(a is b for a, b in zip(source, self._source_shown)):
            return  # the same image as before: keep its decoded covariance
        self._source_shown = source
        self._token += 1  # results computed for the previous source are dropped
        self.prepared = None
        self._samples = None
        self.correlation = None
        for view in (self.correlation_view, self.zoom_view, self.variance_view, self.mean_view):
            view.set_image(None)
        if prepared is not None:  # decoded on the reconstruction worker when the run ended
            self._use_prepared(prepared)
        elif image is not None and self.isVisible():
            self.ensure_model()
            self._prepare_current()

    def _std_scale_of_source(self):
        """``(StdScale or None, why not)``: the stored std scale factor for the inspected run
        (:func:`~genreg_viewer.application.uncertainty.std_scale_of_run`)."""
        return std_scale_of_run(self._inspected_run(), self.image_weight_set())

    def _inspected_run(self):
        """The run record being inspected, or None (ground truth, adjoint, an image from the comparison)."""
        key = self.source_combo.currentData()
        return self.state.result(int(key[4:])) if isinstance(key, str) and key.startswith("run:") else None

    def _show_std(self) -> None:
        """The inspected run's posterior std map, raw or, with "Calibrated std" checked, times the stored factor
        (the colour bar follows). A run saved by ``genreg recon --calibrated-std`` holds its map times
        ``info['std_scale']``; that is undone first, so unchecked always means the raw map."""
        record = self._inspected_run()
        std_map = raw_std_map(record) if record is not None and self._source_details()[3] is not None else None
        found, why_not = self._std_scale_of_source()
        check = self.calibrated_std_check
        check.setEnabled(found is not None)
        check.setToolTip(f"Multiply the std map by the stored scale factor {found.description}" if found is not None
                         else why_not)
        self.std_scale = found if found is not None and check.isChecked() else None
        if std_map is not None and self.std_scale is not None:
            std_map = self.std_scale.scale * std_map
        levels = _levels(std_map)
        self.std_view.set_image(std_map, levels=levels, colormap=SEQUENTIAL)
        if std_map is None:
            self.std_view.set_caption("<i>choose a run that reports its posterior std (mean+covar, latent-vi)</i>")
            return
        calibrated = self.std_scale is not None
        self.std_view.show_colorbar(SEQUENTIAL, levels, "calibrated std (intensity)" if calibrated else
                                    "std (intensity)")
        self.std_view.set_caption(f"calibrated: raw std x {self.std_scale.scale:.3g}" if self.std_scale is not None
                                  else "")

    def _prepare_current(self) -> None:
        """Decode ``L(z)`` for the chosen source unless it is decoded or being decoded already."""
        if self.model is None or self.prepared is not None or self._preparing == self._token:
            return
        _key, image, latent, _std = self._source()
        if image is None:
            return
        model, token = self.model, self._token
        self._preparing = token
        self.status_label.setText("Decoding the covariance…")
        self.worker.submit(f"prepare:{token}", lambda: prepare_covariance(model, image, latent))

    def _use_prepared(self, prepared: dict) -> None:
        self._preparing = None
        self.prepared = prepared
        variance = prepared["variance"]
        self.variance_view.set_image(variance, levels=_levels(variance), colormap=SEQUENTIAL)
        self.variance_view.show_colorbar(SEQUENTIAL, _levels(variance), "variance (intensity²)")
        self.variance_view.set_caption(f"max {float(variance.max()):.3g} · mean {float(variance.mean()):.3g}")
        self._show_mean_or_samples()
        self.status_label.setText("Click or drag over the image")
        if self._pending_pixel is None and self.pixel is not None:
            self._pending_pixel = self.pixel
        self._dispatch_row()
        if self.mean_combo.currentData() == "samples":
            self.draw_samples()

    def _draw_clicked(self) -> None:
        self.mean_combo.setCurrentIndex(self.mean_combo.findData("samples"))
        self.draw_samples()

    def _show_mean_or_samples(self, *_args) -> None:
        view = self.mean_view
        if self.mean_combo.currentData() == "samples":
            view.set_title("Residual samples  G(z) + L⁻ᵀu")
            if self._samples is None:
                view.set_image(None)
                view.set_caption("")
                if self.prepared is not None:
                    self.draw_samples()
                return
            view.set_image(self._samples, levels=(0.0, 1.0))
            view.set_caption(f"{self._samples_count} draws, seed {self._samples_seed}")
        else:
            view.set_title("Decoder mean  G(z)")
            view.set_image(None if self.prepared is None else self.prepared["mean"][0, 0].numpy())
            view.set_caption("")

    def _dispatch_row(self) -> None:
        if self._row_busy or self._pending_pixel is None or self.prepared is None:
            return
        row, col = self._pending_pixel
        self._pending_pixel = None
        self._row_busy = True
        cholesky = self.prepared["cholesky"]
        self.worker.submit(f"row:{self._token}", lambda: (row, col, cholesky.correlation_row(row, col)))

    def _show_correlation(self, *_args) -> None:
        correlation, pixel = self.correlation, self.pixel
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

    def _done(self, tag: str, result) -> None:
        kind, _, token = tag.partition(":")
        current = token == str(self._token)
        if kind == "model":
            self._loading = False
            self.model = result
            self.status_label.setText("Covariance model ready: click a pixel")
            self._prepare_current()
        elif kind == "prepare" and current:
            self._use_prepared(result)
        elif kind == "row":
            self._row_busy = False
            row, col, correlation = result
            if current:
                self.pixel = (row, col)
                self.correlation = correlation.astype(np.float32)
                self._show_correlation()
                self.rowShown.emit(row, col)
            elif self._pending_pixel is None:  # computed for an older image: ask again for the new one
                self._pending_pixel = (row, col)
            self._dispatch_row()
        elif kind == "samples" and current:
            columns = int(math.ceil(math.sqrt(len(result))))
            self._samples = phantom_grid(np.stack(result), columns=columns, gap=2)
            self._samples_count, self._samples_seed = len(result), self.seed_spin.value()
            if self.mean_combo.currentData() == "samples":
                self._show_mean_or_samples()

    def _failed(self, tag: str, message: str) -> None:
        if tag == "model":
            self._loading = False
            self.model_error = message
            self.status_label.setText(f"<b>The covariance model is not available.</b> {message}")
            self.correlation_view.set_caption("<i>no covariance model</i>")
            return
        if tag.startswith("prepare:"):
            self._preparing = None
        if tag.startswith("row:"):
            self._row_busy = False
        self.status_label.setText("Covariance computation failed")
        self.errorOccurred.emit("Covariance inspector", message)

    def reset_model(self, *_args) -> None:
        """Forget the loaded model (the weight set changed): the next source is decoded by the new one."""
        self.model, self.model_error, self._loading = None, None, False
        self._model_weight_set = None
        self._source_shown = None
        self._source_changed()

    def showEvent(self, event) -> None:  # noqa: N802 (Qt API)
        super().showEvent(event)
        if self.source_combo.currentData() is not None:
            self.ensure_model()
            self._prepare_current()


def _levels(array: np.ndarray | None) -> tuple[float, float]:
    if array is None or array.size == 0:
        return 0.0, 1.0
    high = float(np.percentile(array, 99.5))
    return 0.0, high if high > 0 else 1.0
