"""Covariance inspector: what the structured-covariance VAE has learned about an image.

For the chosen image ``x`` (ground truth, adjoint, or a finished run) the latent is ``z = mu(x)`` from the encoder
(or the run's own ``extras['latent']``); the decoder gives the mean ``G(z)`` and the sparse Cholesky factor
``L(z)`` of the precision, ``Sigma(z)^{-1} = L L^T`` (paper, Sec. 3). Clicking (or dragging over) a pixel ``i``
shows row ``i`` of ``Sigma`` as correlations ``Sigma_ij / sqrt(Sigma_ii Sigma_jj)`` on a blue-white-red map with
levels ``[-1, 1]`` (exactly 1 at the star). Also shown: the variance map ``diag(Sigma)``, residual samples
``G(z) + L^{-T} u`` with ``u ~ N(0, I)``, and the posterior standard deviation of a run that reports one
(``extras['std_map']``: mean+covar, latent-vi).

A run's own latent is used only where it lives in the covariance model's latent space (mean+covar, latent-vi with
the covar VAE); other runs (range search, the flow) are encoded like any image. While "Follow new runs" is on, each
new finished run that reports a ``std_map`` or a ``latent`` becomes the inspected image; choosing an image in the
selector yourself turns following off, so the choice stays until you turn it on again.

All model work runs on a worker thread. Dragging is throttled by completion: while one row is being computed
only the newest requested pixel is kept, and it is sent as soon as the worker is free.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PyQt6.QtCore import Qt, pyqtSignal
from PyQt6.QtGui import QAction
from PyQt6.QtWidgets import (
    QComboBox,
    QGridLayout,
    QLabel,
    QSpinBox,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from ...data.phantom import phantom_grid
from ..state import ExperimentState, RunRecord
from ..widgets.controls import compact_combo, wrapped_label
from ..widgets.image_view import DIVERGING, SEQUENTIAL, ImageView, em
from ..workers import WorkerThread

from ...weight_sets import active_weight_set

MODEL_KIND = "covar"


def load_covariance_model():
    """The structured-covariance VAE of the active weight set (``WeightsError``, a ``ValueError``, when it is
    missing)."""
    from ...models.vae import load_generative_model

    return load_generative_model(kind=MODEL_KIND)


#: arrays of a run that make it worth inspecting: the panel follows new runs that report one of them
INSPECTABLE_ARRAYS = ("std_map", "latent")


def is_inspectable(record: RunRecord) -> bool:
    """A finished (not cancelled) run that reports a posterior std map or a latent."""
    return not record.cancelled and any(name in record.arrays for name in INSPECTABLE_ARRAYS)


def covariance_latent(record: RunRecord) -> np.ndarray | None:
    """The run's ``extras['latent']`` where it is a latent of the covariance model, else None (encode the image).

    mean+covar optimises z of the bundled covar VAE, and latent-vi does with ``generator=vae, kind=covar``; the
    latents of other runs belong to other models (the identity VAE, the flow) and mean nothing to this decoder.
    """
    latent = record.arrays.get("latent")
    params = record.params
    own = record.method == f"mean+{MODEL_KIND}" or (
        record.method == "latent-vi" and params.get("generator") == "vae" and params.get("kind") == MODEL_KIND)
    return latent if own else None


def _prepare(model, image: np.ndarray | None, latent: np.ndarray | None) -> dict:
    """Latent, mean ``G(z)``, Cholesky factor ``L(z)`` and variance map for one image (or a given latent)."""
    with torch.no_grad():
        if latent is None:
            x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
            z, _ = model.encode(x)
        else:
            z = torch.as_tensor(np.asarray(latent, dtype=np.float32)).reshape(1, -1)
        mean = model.decode_mean(z)
        cholesky = model.decode_cholesky(z).detach()
    return {"cholesky": cholesky, "mean": mean, "variance": np.asarray(cholesky.variance_map(), np.float32)}


def _samples(prepared: dict, count: int, seed: int) -> list[np.ndarray]:
    generator = torch.Generator().manual_seed(seed)
    draws = prepared["cholesky"].sample(prepared["mean"], generator, count)  # (count, 1, 1, H, W)
    return [draws[i].reshape(draws.shape[-2:]).numpy().astype(np.float32) for i in range(count)]


class CovariancePanel(QWidget):
    """Click an image to see the covariance model's correlation map at that pixel."""

    errorOccurred = pyqtSignal(str, str)

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
        self._pending_pixel: tuple[int, int] | None = None
        self._row_busy = False
        self._loading = False
        self._custom_image: np.ndarray | None = None
        self.model_loader = load_covariance_model  #: called on the worker thread (tests inject a small model)

        layout = QVBoxLayout(self)
        layout.addWidget(self._toolbar())
        self.status_label = wrapped_label()
        layout.addWidget(self.status_label)
        grid = QGridLayout()
        grid.setSpacing(em(self, 0.8))
        self.source_view = ImageView("Image (click or drag)")
        self.correlation_view = ImageView("Correlation with the starred pixel")
        self.variance_view = ImageView("Variance  diag Σ(z)")
        self.mean_view = ImageView("Decoder mean  G(z)")
        self.samples_view = ImageView("Residual samples  G(z) + L⁻ᵀu")
        self.std_view = ImageView("Posterior std of the run")
        views = (self.source_view, self.correlation_view, self.variance_view,
                 self.mean_view, self.samples_view, self.std_view)
        for index, view in enumerate(views):
            grid.addWidget(view, index // 3, index % 3)
        for view in (self.correlation_view, self.variance_view, self.mean_view, self.std_view):
            view.link_to(self.source_view)
        self.correlation_view.show_colorbar(DIVERGING, (-1.0, 1.0))
        layout.addLayout(grid, 1)
        self.source_view.image_item.drag_picking = True
        self.source_view.pixelClicked.connect(self.request_pixel)
        self.source_view.image_item.pixelDragged.connect(lambda r, c, _finished: self.request_pixel(r, c))
        self.correlation_view.pixelClicked.connect(self.request_pixel)
        for signal in (state.imageChanged, state.resultRemoved, state.resultsCleared):
            signal.connect(self._refresh_sources)
        state.resultAdded.connect(self._result_added)
        state.measurementChanged.connect(self._measurement_changed)
        self._refresh_sources()
        from ..calibration_plot import add_calibration_plot  # std-map calibration curves (genreg calibrate)

        self.calibration_plot = add_calibration_plot(self, layout)

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
        self.count_spin = QSpinBox(minimum=1, maximum=16, value=4)
        self.count_spin.setToolTip("Number of residual samples")
        self.seed_spin = QSpinBox(minimum=0, maximum=2**31 - 1, value=0)
        self.seed_spin.setToolTip("Seed of the residual samples")
        bar.addWidget(QLabel("Image "))
        bar.addWidget(self.source_combo)
        bar.addAction(self.follow_action)
        for widget in (QLabel("   Samples "), self.count_spin, QLabel("  Seed "), self.seed_spin):
            bar.addWidget(widget)
        self.sample_action = bar.addAction("Draw samples", self.draw_samples)
        return bar

    # --------------------------------------------------------------------- API
    def ensure_model(self) -> None:
        """Start loading the covariance model (once) on the worker thread."""
        if self.model is None and not self._loading and self.model_error is None:
            self._loading = True
            self.status_label.setText("Loading the covariance model…")
            self.worker.submit("model", self.model_loader)

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
        self.source_view.set_marker(row, col)
        self.correlation_view.set_marker(row, col)
        self._dispatch_row()

    def draw_samples(self) -> None:
        if self.prepared is None:
            self.status_label.setText("The covariance model is not ready")
            return
        prepared, count, seed = self.prepared, self.count_spin.value(), self.seed_spin.value()
        self.worker.submit(f"samples:{self._token}", lambda: _samples(prepared, count, seed))

    def shutdown(self, timeout_ms: int = 5000) -> bool:
        """Stop the worker (waiting up to ``timeout_ms``; 0: not at all); its late results are dropped."""
        return self.worker.shutdown(timeout_ms)

    # ---------------------------------------------------------------- internals
    def _source(self) -> tuple[str, np.ndarray | None, np.ndarray | None, np.ndarray | None]:
        """``(key, image, latent, std_map)`` of the chosen source."""
        key = self.source_combo.currentData()
        if key == "truth":
            return key, self.state.image, None, None
        if key == "adjoint":
            return key, self.state.adjoint, None, None
        if key == "custom":
            return key, self._custom_image, None, None
        if isinstance(key, str) and key.startswith("run:"):
            record = self.state.result(int(key[4:]))
            if record is not None:
                # a latent belongs to the weights it was found with: after a switch of weight set, encode instead
                same_weights = record.setting.get("weights", active_weight_set().name) == active_weight_set().name
                latent = covariance_latent(record) if same_weights else None
                return key, record.image, latent, record.arrays.get("std_map")
        return "", None, None, None

    def _latest_inspectable_key(self) -> str | None:
        latest = next((r for r in reversed(self.state.results) if is_inspectable(r)), None)
        return None if latest is None else f"run:{latest.run_id}"

    def _result_added(self, record: RunRecord) -> None:
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
        combo.blockSignals(False)
        self._source_changed()

    def _measurement_changed(self) -> None:
        if self.source_combo.currentData() == "adjoint":
            self._source_changed()

    def _source_changed(self, *_args) -> None:
        key, image, latent, std_map = self._source()
        self.source_view.set_image(image)
        self.std_view.set_image(std_map, levels=_levels(std_map), colormap=SEQUENTIAL)
        self.std_view.set_caption("" if std_map is not None else
                                  "<i>choose a run that reports its posterior std (mean+covar, latent-vi)</i>")
        source = (key, image, latent)
        if self._source_shown is not None and all(a is b for a, b in zip(source, self._source_shown)):
            return  # the same image as before: keep its decoded covariance
        self._source_shown = source
        self._token += 1  # results computed for the previous source are dropped
        self.prepared = None
        for view in (self.correlation_view, self.variance_view, self.mean_view, self.samples_view):
            view.set_image(None)
        if image is not None and self.isVisible():
            self.ensure_model()
            self._prepare_current()

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
        self.worker.submit(f"prepare:{token}", lambda: _prepare(model, image, latent))

    def _dispatch_row(self) -> None:
        if self._row_busy or self._pending_pixel is None or self.prepared is None:
            return
        row, col = self._pending_pixel
        self._pending_pixel = None
        self._row_busy = True
        cholesky = self.prepared["cholesky"]
        self.worker.submit(f"row:{self._token}", lambda: (row, col, cholesky.correlation_row(row, col)))

    def _done(self, tag: str, result) -> None:
        kind, _, token = tag.partition(":")
        current = token == str(self._token)
        if kind == "model":
            self._loading = False
            self.model = result
            self.status_label.setText("Covariance model ready: click a pixel")
            self._prepare_current()
        elif kind == "prepare" and current:
            self._preparing = None
            self.prepared = result
            self.variance_view.set_image(result["variance"], levels=_levels(result["variance"]), colormap=SEQUENTIAL)
            self.variance_view.set_caption(f"max {float(result['variance'].max()):.3g}")
            self.mean_view.set_image(result["mean"][0, 0].numpy())
            self.status_label.setText("Click or drag over the image")
            if self._pending_pixel is None and self.pixel is not None:
                self._pending_pixel = self.pixel
            self._dispatch_row()
            self.draw_samples()
        elif kind == "row":
            self._row_busy = False
            row, col, correlation = result
            if current:
                self.pixel = (row, col)
                self.correlation_view.set_image(correlation.astype(np.float32), levels=(-1.0, 1.0),
                                                colormap=DIVERGING)
                self.correlation_view.set_caption(f"pixel (row {row}, col {col}) · blue −1 · white 0 · red +1")
            elif self._pending_pixel is None:  # computed for an older image: ask again for the new one
                self._pending_pixel = (row, col)
            self._dispatch_row()
        elif kind == "samples" and current:
            columns = int(math.ceil(math.sqrt(len(result))))
            self.samples_view.set_image(phantom_grid(np.stack(result), columns=columns, gap=2), levels=(0.0, 1.0))
            self.samples_view.set_caption(f"{len(result)} draws, seed {self.seed_spin.value()}")

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
