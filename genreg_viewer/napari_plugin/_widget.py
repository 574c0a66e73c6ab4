"""napari dock widgets: reconstruct the current slice with any registered method, and the covariance inspector.

Both are thin views over the Qt-free application model, as the app's panels are:

* :class:`ReconstructionWidget` puts the chosen image layer's current 2-D slice into an
  :class:`~genreg_viewer.application.experiment.ExperimentState` with a mask spec (``radial:25``, ``golden:N``,
  ``cartesian:ROWS:P``, ``random:F``, ``full``) and noise sigma/seed, builds a job with
  :meth:`ExperimentState.make_job` (the weight set the app would use, the method's tuned defaults) and runs
  :func:`~genreg_viewer.application.jobs.run_job` in a napari thread worker. Progress reports reach the GUI thread as
  a queued Qt signal (a progress bar in the widget and napari's activity dock); *Cancel* sets the job's cancel event,
  checked between iterations. The result becomes an image layer (plus the posterior std map when the method gives
  one) carrying its :class:`~genreg_viewer.application.runs.RunRecord` in ``metadata["genreg_run"]``.
* :class:`CovarianceWidget` decodes the structured-covariance VAE for the chosen layer
  (:mod:`genreg_viewer.application.covariance`: a mean+covar run's own latent, else the encoder's latent of the
  image) on a worker, and a click on a pixel of that layer shows the pixel's correlation row
  ``Sigma_ij / sqrt(Sigma_ii Sigma_jj)`` as a ``bwr`` layer with contrast limits ``[-1, 1]`` and its colour bar.

Images that are not 128 x 128 in [0, 1] are preprocessed as the app preprocesses a file it opens (centre crop to a
square, resize, scale to [0, 1]); the new layers then get the scale and translation that lay them over the source.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from napari.layers import Image
from napari.qt.threading import create_worker
from napari.utils import progress
from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..application.covariance import (
    PreparedCovariance,
    covariance_latent,
    load_covariance_model,
    prepare_covariance,
)
from ..application.experiment import IMAGE_SIZE, ExperimentState, ImageInfo
from ..application.jobs import ProgressUpdate, ReconJob, run_job, user_message
from ..application.runs import RunRecord
from ..cli.common import parse_param_pairs
from ..data.limits import MAX_SEED
from ..data.preprocess import preprocess
from ..defaults import DEFAULT_MASK_SPEC, DEFAULT_NOISE_SIGMA
from ..device import resolve_device
from ..physics import mask_from_spec
from ..physics.noise import MAX_SIGMA
from ..recon import ReconMethod, all_methods
from ..weight_sets import resolve_weight_set, weight_set_choice
from ._reader import run_metadata, std_layer_kwargs

#: colour map and name of the covariance inspector's layer
CORRELATION_COLORMAP = "bwr"
CORRELATION_LAYER = "correlation"


# ----------------------------------------------------------------------------------------- layers and slices


@dataclass
class Placement:
    """Where a working image's pixels lie in the source layer's world coordinates (last two axes)."""

    scale: tuple[float, float]
    translate: tuple[float, float]

    def kwargs(self) -> dict[str, Any]:
        return {"scale": self.scale, "translate": self.translate}


@dataclass
class WorkingImage:
    """A layer's current 2-D slice as the methods get it (128 x 128 in [0, 1]), where it lies, and what changed."""

    image: np.ndarray
    placement: Placement
    key: tuple  #: (layer id, slice index): identifies the slice (the covariance inspector's cache)
    slice_index: int | None
    note: str


def image_layers(viewer) -> list[Image]:
    """The viewer's image layers with 2 or 3 dimensions (a 2-D image or a stack of slices), greyscale."""
    return [layer for layer in viewer.layers
            if isinstance(layer, Image) and layer.ndim in (2, 3) and not layer.rgb]


def current_slice(viewer, layer: Image) -> tuple[np.ndarray, int | None]:
    """The 2-D slice of ``layer`` the viewer shows (its last two axes), and its index in a 3-D layer."""
    data = layer.data
    if layer.ndim == 2:
        return np.asarray(data), None
    position = layer.world_to_data(viewer.dims.point)
    index = int(np.clip(round(float(position[0])), 0, data.shape[0] - 1))
    return np.asarray(data[index]), index


def working_image(viewer, layer: Image, size: int = IMAGE_SIZE) -> WorkingImage:
    """The current slice of ``layer`` as a ``size x size`` image in [0, 1]: used as it is when it already is one,
    else preprocessed as the app preprocesses the files it opens (``DataError`` for a constant slice)."""
    plane, index = current_slice(viewer, layer)
    plane = np.asarray(plane)
    scale = tuple(float(s) for s in layer.scale[-2:])
    translate = tuple(float(t) for t in layer.translate[-2:])
    key = (id(layer), index)
    finite = np.isfinite(plane).all() if plane.dtype.kind in "fc" else True
    if plane.shape == (size, size) and plane.dtype.kind in "biuf" and finite and plane.min() >= 0 and plane.max() <= 1:
        image = plane.astype(np.float32)
        return WorkingImage(image, Placement((scale[0], scale[1]), (translate[0], translate[1])), key, index, "")
    rows, cols = plane.shape
    side = min(rows, cols)
    image = preprocess(plane, size)
    step = side / size  # source pixels per working pixel
    offsets = ((rows - side) // 2, (cols - side) // 2)  # preprocess's centre crop (fastMRI's window)
    # working pixel i covers source pixels [offset + i step - 1/2, offset + (i + 1) step - 1/2]
    new_scale = (scale[0] * step, scale[1] * step)
    new_translate = tuple(t + s * (o + step / 2 - 0.5) for t, s, o in zip(translate, scale, offsets))
    note = (f"{rows}x{cols} slice " + ("cropped to the centre square, " if rows != cols else "")
            + f"resized to {size}x{size} and scaled to [0, 1]")
    return WorkingImage(image, Placement(new_scale, (new_translate[0], new_translate[1])), key, index, note)


def layer_path(layer: Image) -> str | None:
    """The file a layer was read from, when napari knows it."""
    path = getattr(getattr(layer, "source", None), "path", None)
    return None if path is None else str(path)


# ------------------------------------------------------------------------------------------ reconstruction


class _Relay(QObject):
    """Carries the worker thread's progress reports to the GUI thread (a queued connection)."""

    reported = Signal(object)


class ReconstructionWidget(QWidget):
    """Run a registered reconstruction method on the current slice of an image layer."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.state = ExperimentState()
        self.methods: dict[str, ReconMethod] = {m.name: m for m in all_methods()}
        self.worker: Any = None  #: the running napari FunctionWorker, None when idle
        self.job: ReconJob | None = None
        self.last_record: RunRecord | None = None  #: the newest finished (not cancelled) run
        self.last_error: str | None = None
        self._placement: Placement | None = None
        self._progress: Any = None  #: napari.utils.progress of the running job
        self._relay = _Relay()
        self._relay.reported.connect(self._on_progress)

        self.layer_combo = QComboBox()
        self.layer_combo.setToolTip("The image layer whose current 2-D slice is the ground truth")
        self.method_combo = QComboBox()
        for method in self.methods.values():
            self.method_combo.addItem(method.title, method.name)
            ok, why = method.available()
            if not ok:
                item = self.method_combo.model().item(self.method_combo.count() - 1)
                item.setEnabled(False)
                item.setToolTip(why)
        self.iterations_spin = QSpinBox()
        self.iterations_spin.setRange(1, 1_000_000)
        self.params_edit = QLineEdit()
        self.params_edit.setPlaceholderText("name=value name=value (default: the method's values)")
        self.mask_edit = QLineEdit(DEFAULT_MASK_SPEC)
        self.mask_edit.setToolTip("radial:N, golden:N, cartesian:CENTRE_ROWS:P, random:FRACTION, full")
        self.sigma_spin = QDoubleSpinBox()
        self.sigma_spin.setDecimals(4)
        self.sigma_spin.setRange(0.0, MAX_SIGMA)
        self.sigma_spin.setSingleStep(0.01)
        self.sigma_spin.setValue(DEFAULT_NOISE_SIGMA)
        self.sigma_spin.setToolTip("std of the real and imaginary k-space noise")
        self.seed_spin = QSpinBox()
        self.seed_spin.setRange(0, min(MAX_SEED - 1, 2**31 - 1))
        self.seed_spin.setToolTip("seed of the noise, random masks and the method")
        self.run_button = QPushButton("Run")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.status_label = QLabel("Choose an image layer and a method")
        self.status_label.setWordWrap(True)

        form = QFormLayout()
        form.addRow("Image", self.layer_combo)
        form.addRow("Method", self.method_combo)
        form.addRow("Iterations", self.iterations_spin)
        form.addRow("Parameters", self.params_edit)
        form.addRow("Mask", self.mask_edit)
        form.addRow("Noise σ", self.sigma_spin)
        form.addRow("Seed", self.seed_spin)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.status_label)
        layout.addStretch(1)

        self.method_combo.currentIndexChanged.connect(self._method_changed)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        for event in (napari_viewer.layers.events.inserted, napari_viewer.layers.events.removed,
                      napari_viewer.layers.events.reordered):
            event.connect(self._refresh_layers)
        self._refresh_layers()
        self.set_method("tv" if "tv" in self.methods else next(iter(self.methods)))

    # ------------------------------------------------------------------ controls
    def _refresh_layers(self, *_args) -> None:
        refresh_layer_combo(self.layer_combo, image_layers(self.viewer))

    def _method_changed(self, *_args) -> None:
        method = self.current_method()
        if method is None:
            return
        self.iterations_spin.setValue(method.default_iterations)
        lines = [f"{p.name} = {p.default!r}: {p.help}" for p in method.parameters]
        self.params_edit.setToolTip(f"{method.title} parameters (name=value, blank: the method's value):\n"
                                    + "\n".join(lines))
        self.method_combo.setToolTip(method.description)

    def set_method(self, name: str) -> None:
        self.method_combo.setCurrentIndex(self.method_combo.findData(name))
        self._method_changed()

    def current_method(self) -> ReconMethod | None:
        name = self.method_combo.currentData()
        return self.methods.get(name) if name else None

    def current_layer(self) -> Image | None:
        return layer_by_name(self.viewer, self.layer_combo.currentText())

    # ------------------------------------------------------------------ running
    def run(self, *_args):
        """Start the chosen method on the current slice; returns the worker (None, with the reason in the status
        line, when the settings are wrong or a run is going)."""
        if self.worker is not None:
            self.status_label.setText("A reconstruction is running: cancel it first")
            return None
        try:
            job = self._make_job()
        except Exception as exc:  # noqa: BLE001 - bad settings: one line in the widget
            self.last_error = user_message(exc)
            self.status_label.setText(self.last_error)
            return None
        self.job, self.last_error = job, None
        self.progress_bar.setRange(0, job.iterations)
        self.progress_bar.setValue(0)
        self._progress = progress(total=job.iterations, desc=f"{job.title} #{job.job_id}")
        relay = self._relay

        worker = create_worker(run_job, job, relay.reported.emit)
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_errored)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.status_label.setText(f"Running {job.title} ({job.iterations} iterations)…")
        worker.start()
        return worker

    def _make_job(self) -> ReconJob:
        layer = self.current_layer()
        if layer is None:
            raise ValueError("no image layer: open an image, a fastMRI volume or a slice set first")
        method = self.current_method()
        if method is None:
            raise ValueError("choose a method")
        overrides = parse_param_pairs(self.params_edit.text().split())
        method.resolve_params(overrides)  # unknown names and bad values fail here, before any work
        working = working_image(self.viewer, layer)
        path = layer_path(layer)
        source = layer.name if working.slice_index is None else f"{layer.name} (slice {working.slice_index})"
        num_slices = 1 if working.slice_index is None else int(layer.data.shape[0])
        self.state.set_image(working.image, ImageInfo(source=path or source, slice_index=working.slice_index,
                                                      num_slices=num_slices, path=path, note=working.note))
        spec = self.mask_edit.text().strip()
        seed = self.seed_spin.value()
        self.state.set_mask(mask_from_spec(spec, self.state.shape, seed), spec)
        self.state.set_noise(self.sigma_spin.value(), seed)
        self._placement = working.placement
        device = str(resolve_device("auto"))
        return self.state.make_job(method, overrides, self.iterations_spin.value(), device=device)

    def cancel(self, *_args) -> None:
        """Stop the running job after its current iteration (its result is not added)."""
        if self.job is not None and self.worker is not None:
            self.job.cancel.set()
            self.status_label.setText("Cancelling…")

    def _on_progress(self, update: ProgressUpdate) -> None:
        job = self.job
        if job is None:  # a report queued before the run ended, delivered after it
            return
        self.progress_bar.setValue(min(update.iteration, self.progress_bar.maximum()))
        last = update.points[-1] if update.points else None
        score = f", PSNR {last[2]:.2f} dB" if last is not None and last[2] is not None else ""
        self.status_label.setText(f"{job.title}: iteration {update.iteration}/{update.total}{score}")
        if self._progress is not None:
            self._progress.update(update.iteration - self._progress.n)

    def _on_returned(self, record: RunRecord) -> None:
        job = self.job
        if job is None:
            return
        if record.cancelled:
            self.status_label.setText(f"{record.title} cancelled after {record.iterations} iterations")
            return
        if not self.state.accept(job, record):
            return
        self.last_record = record
        self.progress_bar.setRange(0, max(record.iterations, 1))  # a converged run stops early: shown as done
        self.progress_bar.setValue(max(record.iterations, 1))
        self.add_result_layers(record)
        self.status_label.setText(f"{record.title} #{record.run_id}: {record.metrics_text()} "
                                  f"({record.iterations} iterations, {record.seconds:.1f} s, {record.setting_text()})")

    def add_result_layers(self, record: RunRecord) -> list[Image]:
        """The run's image (and std map) as new layers over the source."""
        placement = self._placement.kwargs() if self._placement is not None else {}
        name = f"{record.title} #{record.run_id} ({record.setting.get('mask')}, σ {record.setting.get('sigma')})"
        run_meta = run_metadata(record)
        added = [self.viewer.add_image(record.image, name=name, contrast_limits=(0.0, 1.0),
                                       metadata={"genreg": run_meta, "genreg_run": record}, **placement)]
        std = record.arrays.get("std_map")
        if std is not None:
            added.append(self.viewer.add_image(
                std, **std_layer_kwargs(f"{name} std", std, {"genreg": {**run_meta, "role": "std_map"}}),
                **placement))
        return added

    def _on_errored(self, exc: BaseException) -> None:
        self.last_error = user_message(exc)
        self.status_label.setText(f"The reconstruction failed: {self.last_error}")

    def _on_finished(self) -> None:
        if self._progress is not None:
            self._progress.close()
            self._progress = None
        self.worker = None
        self.job = None
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)


# ----------------------------------------------------------------------------------------------- covariance


def layer_by_name(viewer, name: str) -> Image | None:
    layer = next((lay for lay in viewer.layers if lay.name == name), None)
    return layer if isinstance(layer, Image) else None


def refresh_layer_combo(combo: QComboBox, layers: list[Image]) -> None:
    """Fill ``combo`` with the layers' names, keeping the chosen one where it is still there."""
    current = combo.currentText()
    names = [layer.name for layer in layers]
    if names == [combo.itemText(i) for i in range(combo.count())]:
        return
    combo.blockSignals(True)
    combo.clear()
    combo.addItems(names)
    combo.blockSignals(False)
    combo.setCurrentIndex(names.index(current) if current in names else (len(names) - 1 if names else -1))
    combo.currentIndexChanged.emit(combo.currentIndex())


def _weight_set_of(layer: Image, record: RunRecord | None):
    """The weight set whose covariance model belongs to ``layer``: the one its run used (its latent lives in that
    model's space), else the one the app would choose for the file it came from."""
    name = None if record is None else record.setting.get("weights")
    if name:
        try:
            return resolve_weight_set(name)
        except ValueError:  # a folder that is gone: encode the image with the current choice instead
            pass
    return weight_set_choice(layer_path(layer))[0]


class CovarianceWidget(QWidget):
    """Click a pixel of the chosen image layer to see its learned correlation row as a red/blue layer."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.prepared: PreparedCovariance | None = None  #: mean, Cholesky factor, variances of ``prepared_key``
        self.prepared_key: tuple | None = None
        self.prepared_placement: Placement | None = None
        self.worker: Any = None  #: the decoding worker, None when idle
        self.pixel: tuple[int, int] | None = None
        self.correlation: np.ndarray | None = None
        self.last_error: str | None = None
        self._pending: tuple[int, int] | None = None  #: a pixel clicked before the decoding was ready
        self._prepare_wanted = False  #: a layer was chosen while another one was being decoded

        self.layer_combo = QComboBox()
        self.layer_combo.setToolTip("The image (or run) whose latent code defines the covariance; click it")
        self.status_label = QLabel("Choose an image layer, then click a pixel")
        self.status_label.setWordWrap(True)
        form = QFormLayout()
        form.addRow("Image", self.layer_combo)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.status_label)
        layout.addStretch(1)

        for event in (napari_viewer.layers.events.inserted, napari_viewer.layers.events.removed,
                      napari_viewer.layers.events.reordered):
            event.connect(self._refresh_layers)
        # decoding starts when the user picks a layer (and for the layer shown when the widget opens); layer-list and
        # slice changes only drop a decoding that no longer fits (the next click decodes again): nothing starts
        # while napari closes the viewer and removes its layers
        self.layer_combo.activated.connect(self._layer_chosen)
        self.layer_combo.currentIndexChanged.connect(self._forget_if_stale)
        napari_viewer.mouse_drag_callbacks.append(self._on_mouse)
        napari_viewer.dims.events.current_step.connect(self._forget_if_stale)
        self._refresh_layers()
        if self.current_layer() is not None:
            self.prepare()

    def _refresh_layers(self, *_args) -> None:
        layers = [layer for layer in image_layers(self.viewer) if layer.name != CORRELATION_LAYER]
        refresh_layer_combo(self.layer_combo, layers)

    def current_layer(self) -> Image | None:
        return layer_by_name(self.viewer, self.layer_combo.currentText())

    def _layer_chosen(self, *_args) -> None:
        self._forget_if_stale()
        if self.prepared is None:
            self._prepare_wanted = True
            if self.worker is None:  # else when the running decoding ends
                self.prepare()

    def _forget_if_stale(self, *_args) -> None:
        """Drop the decoding when the chosen layer or its shown slice changed."""
        layer = self.current_layer()
        key = None
        if layer is not None:
            try:
                key = working_image(self.viewer, layer).key
            except ValueError:
                key = None
        if key != self.prepared_key:
            self.prepared = self.prepared_key = self.prepared_placement = None

    # ------------------------------------------------------------------ decoding
    def prepare(self):
        """Decode ``L(z)`` and the variance map for the chosen layer's current slice on a worker (a run that
        brought its decoding along is used at once); returns the worker, or None."""
        layer = self.current_layer()
        if layer is None:
            return None
        try:
            working = working_image(self.viewer, layer)
        except ValueError as exc:
            self.status_label.setText(user_message(exc))
            return None
        record = layer.metadata.get("genreg_run")
        record = record if isinstance(record, RunRecord) else None
        latent = covariance_latent(record) if record is not None else None
        self.prepared, self.prepared_key, self.prepared_placement = None, working.key, working.placement
        self._prepare_wanted = False
        if record is not None and record.covariance is not None:  # decoded by run_job when the run ended
            self._use_prepared((working.key, record.covariance))
            return None
        weight_set = _weight_set_of(layer, record)
        image = record.image if record is not None else working.image  # a run's own pixels, not rescaled
        key = working.key

        def decode():
            model = load_covariance_model(weight_set)
            return key, prepare_covariance(model, None if latent is not None else image, latent)

        worker = create_worker(decode)
        worker.returned.connect(self._use_prepared)
        worker.errored.connect(self._failed)
        worker.finished.connect(self._decoded)
        self.worker = worker
        own = "the run's latent" if latent is not None else "the encoder's latent of the image"
        self.status_label.setText(f"Decoding the covariance of {layer.name} ({own}, {weight_set.name} weights)…")
        worker.start()
        return worker

    def _use_prepared(self, result: tuple) -> None:
        key, prepared = result
        if key != self.prepared_key:  # decoded for a slice or layer no longer chosen
            return
        self.prepared = prepared
        self.status_label.setText("Click a pixel of the image")
        if self._pending is not None:
            pixel, self._pending = self._pending, None
            self.show_pixel(*pixel)

    def _failed(self, exc: BaseException) -> None:
        self.last_error = user_message(exc)
        self.status_label.setText(f"The covariance model is not available: {self.last_error}")

    def _decoded(self) -> None:
        self.worker = None
        if self.prepared is None and (self._pending is not None or self._prepare_wanted):
            self.prepare()  # the decoding that ended was for a layer or slice no longer chosen

    # ------------------------------------------------------------------ clicks
    def _on_mouse(self, viewer, event) -> None:
        if event.type != "mouse_press":
            return
        layer = self.current_layer()
        if layer is None:
            return
        try:
            placement = working_image(self.viewer, layer).placement
        except ValueError:
            return
        world = np.asarray(event.position, dtype=float)[-2:]
        row, col = (int(round((w - t) / s)) for w, t, s in zip(world, placement.translate, placement.scale))
        if 0 <= row < IMAGE_SIZE and 0 <= col < IMAGE_SIZE:
            self.request_pixel(row, col)

    def request_pixel(self, row: int, col: int) -> None:
        """Show the correlation row of working-image pixel ``(row, col)`` now, or once the decoding is done."""
        if self.prepared is None:
            self._pending = (row, col)
            if self.worker is None:
                self.prepare()
            return
        self.show_pixel(row, col)

    def show_pixel(self, row: int, col: int) -> Image:
        """The correlation row of pixel ``(row, col)`` in the :data:`CORRELATION_LAYER` layer (made or updated)."""
        assert self.prepared is not None
        correlation = np.asarray(self.prepared.cholesky.correlation_row(row, col), dtype=np.float32)
        self.pixel, self.correlation = (row, col), correlation
        placement = self.prepared_placement.kwargs() if self.prepared_placement is not None else {}
        existing = layer_by_name(self.viewer, CORRELATION_LAYER)
        if existing is not None and existing.data.shape == correlation.shape:
            existing.data = correlation
            for name, value in placement.items():
                setattr(existing, name, value)
            layer = existing
        else:
            if existing is not None:
                self.viewer.layers.remove(existing)
            layer = self.viewer.add_image(correlation, name=CORRELATION_LAYER, colormap=CORRELATION_COLORMAP,
                                          contrast_limits=(-1.0, 1.0), **placement)
        layer.contrast_limits = (-1.0, 1.0)
        layer.metadata["genreg"] = {"role": "correlation", "pixel": (row, col),
                                    "source": self.layer_combo.currentText()}
        colorbar = getattr(layer, "colorbar", None)
        if colorbar is not None:
            colorbar.visible = True
        right = correlation[row, col + 1] if col + 1 < correlation.shape[1] else float("nan")
        below = correlation[row + 1, col] if row + 1 < correlation.shape[0] else float("nan")
        self.status_label.setText(f"Correlation with pixel (row {row}, col {col}) of {self.layer_combo.currentText()}:"
                                  f" right {right:+.2f}, below {below:+.2f} (red +1, white 0, blue -1)")
        return layer

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        if self._on_mouse in self.viewer.mouse_drag_callbacks:
            self.viewer.mouse_drag_callbacks.remove(self._on_mouse)
        super().closeEvent(event)


__all__ = ["CovarianceWidget", "ReconstructionWidget", "image_layers", "working_image"]
