"""The covariance inspector's model, free of Qt: which image to inspect, decoding ``L(z)`` with its variance map so
that clicks only need two triangular solves, and the inspector's state (:class:`CovarianceInspector`).

For an image ``x`` (or a run's own latent ``z``) :func:`prepare_covariance` returns the decoder mean ``G(z)``, the
sparse Cholesky factor ``L(z)`` of the precision ``Sigma^{-1} = L L^T`` and the exact variance map
``diag(Sigma)`` (:meth:`~genreg_viewer.models.cholesky.SparseCholesky.variance_map`, block recursion over the
banded factor) as a :class:`PreparedCovariance`, and builds the factor's triangular solver once, so that every
later correlation row ``Sigma e_i / sqrt(Sigma_ii diag(Sigma))`` costs one forward and one back substitution.
The reconstruction worker calls it as soon as an inspectable run ends (:func:`prepare_for_run`), so the first
click on that run in the inspector is as fast as the later ones.

:class:`CovarianceInspector` holds what the app's Covariance tab shows and decides what to compute next; it never
computes on the caller's thread: it hands :class:`CovarianceTask` objects to an executor (the tab's worker thread,
or a list in tests) and is told of their results, dropping those made for an image no longer inspected. The tab
only renders its psygnal events and forwards clicks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Literal

import numpy as np
import torch
from psygnal import Signal

from ..data.phantom import phantom_grid
from .runs import RunRecord
from .uncertainty import raw_std_map, std_scale_of_run

if TYPE_CHECKING:
    from ..evaluation.calibration import StdScale
    from ..models.cholesky import SparseCholesky
    from .experiment import ExperimentState

MODEL_KIND = "covar"

#: arrays of a run that make it worth inspecting: the inspector follows new runs that report one of them
INSPECTABLE_ARRAYS = ("std_map", "latent")


@dataclass(frozen=True)
class PreparedCovariance:
    """The covariance model decoded at one latent code: what every click on that image needs."""

    mean: torch.Tensor  #: the decoder mean ``G(z)``, ``(1, 1, H, W)``
    cholesky: "SparseCholesky"  #: ``L(z)``, its triangular solver built
    variance: np.ndarray  #: ``diag(Sigma(z))``, float32 ``(H, W)``

    def mean_image(self) -> np.ndarray:
        """``G(z)`` as an ``(H, W)`` array."""
        return self.mean[0, 0].numpy()

    def correlation_row(self, row: int, col: int) -> np.ndarray:
        """Row ``(row, col)`` of ``Sigma`` as correlations in [-1, 1], float32 ``(H, W)``."""
        return np.asarray(self.cholesky.correlation_row(row, col), dtype=np.float32)


def load_covariance_model(weight_set=None):
    """The structured-covariance VAE of ``weight_set`` (the caller's: the app's and the plugin's choice for the image;
    default: the bundled default set) on the CPU, shared with the reconstructions (one cached instance per weights file
    version, see :mod:`genreg_viewer.models.cache`; eval mode, frozen). ``WeightsError`` (a
    ``ValueError``) when it is missing."""
    from ..recon.generative.common import bundled_model

    return bundled_model(MODEL_KIND, torch.device("cpu"), weight_set)


def is_inspectable(record: RunRecord) -> bool:
    """A finished (not cancelled) run that reports a posterior std map or a latent."""
    return not record.cancelled and any(name in record.arrays for name in INSPECTABLE_ARRAYS)


def covariance_latent(record: RunRecord) -> np.ndarray | None:
    """The run's ``extras['latent']`` where it is a latent of the covariance model, else None (encode the image).

    mean+covar optimises z of the covar VAE, and latent-vi does with ``generator=vae, kind=covar``; the latents of
    other runs belong to other models (the identity VAE, the flow) and mean nothing to this decoder.
    """
    latent = record.arrays.get("latent")
    params = record.params
    own = record.method == f"mean+{MODEL_KIND}" or (
        record.method == "latent-vi" and params.get("generator") == "vae" and params.get("kind") == MODEL_KIND)
    return latent if own else None


def prepare_covariance(model, image: np.ndarray | None, latent: np.ndarray | None) -> PreparedCovariance:
    """Mean ``G(z)``, Cholesky factor ``L(z)`` and variance map of ``image`` (``z = mu(x)``, the encoder mean) or
    of the given ``latent``; the factor's solver is built (one covariance row at the centre), so rows are cheap from
    here on."""
    with torch.no_grad():
        if latent is None:
            x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
            z, _ = model.encode(x)
        else:
            z = torch.as_tensor(np.asarray(latent, dtype=np.float32)).reshape(1, -1)
        mean = model.decode_mean(z)
        cholesky = model.decode_cholesky(z).detach()
    variance = np.asarray(cholesky.variance_map(), np.float32)
    height, width = variance.shape
    cholesky.covariance_row(height // 2, width // 2)  # builds the triangular solver once
    return PreparedCovariance(mean=mean, cholesky=cholesky, variance=variance)


def prepare_for_run(record: RunRecord, weight_set=None) -> PreparedCovariance | None:
    """:func:`prepare_covariance` for an inspectable run (its own latent, else its image) with the covariance
    model of ``weight_set``; None for runs with nothing to inspect or when that model is missing."""
    if not is_inspectable(record):
        return None
    try:
        model = load_covariance_model(weight_set)
    except (ValueError, OSError):
        return None
    latent = covariance_latent(record)
    return prepare_covariance(model, None if latent is not None else record.image, latent)


def residual_samples(prepared: PreparedCovariance, count: int, seed: int) -> list[np.ndarray]:
    """``count`` draws ``G(z) + L^{-T} u``, ``u ~ N(0, I)`` from a generator seeded with ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    draws = prepared.cholesky.sample(prepared.mean, generator, count)  # (count, 1, 1, H, W)
    return [draws[i].reshape(draws.shape[-2:]).numpy().astype(np.float32) for i in range(count)]


# ------------------------------------------------------------------------------------------- the inspector model
TaskKind = Literal["model", "prepare", "row", "samples"]


@dataclass(frozen=True)
class CovarianceTask:
    """One piece of model work the inspector asks for: run ``function`` off the caller's thread, then report its
    result to :meth:`CovarianceInspector.task_done` (or the error to :meth:`CovarianceInspector.task_failed`).

    ``token`` is the inspected image's number when the task was made (for ``"model"``: the model's load number);
    results for an older one are dropped."""

    kind: TaskKind
    token: int
    function: Callable[[], Any]


@dataclass(frozen=True)
class InspectedSource:
    """The image the inspector decodes, and what a run brought along with it."""

    key: str  #: ``"truth"``, ``"adjoint"``, ``"custom"`` (an image from the comparison), ``"run:<id>"``; "" for none
    image: np.ndarray | None = None
    latent: np.ndarray | None = None  #: the run's own latent, where it lives in the covariance model's space
    std_map: np.ndarray | None = None  #: the run's std map as stored (see :class:`StdDisplay` for the shown one)
    prepared: PreparedCovariance | None = None  #: decoded on the reconstruction worker when the run ended
    record: RunRecord | None = None  #: the inspected run

    def same_image(self, other: "InspectedSource | None") -> bool:
        """Whether ``other`` is this very image and latent (the decoded covariance still applies)."""
        return other is not None and self.key == other.key and self.image is other.image \
            and self.latent is other.latent


@dataclass(frozen=True)
class StdDisplay:
    """The inspected run's posterior std map as shown: raw, or times the stored calibration factor when asked."""

    std_map: np.ndarray | None  #: what to show (None: the source reports no std map)
    scale: "StdScale | None"  #: the factor applied (None: the raw map)
    available: "StdScale | None"  #: the factor that applies to the run, whether applied or not
    why_not: str  #: why no factor applies ("" when one does)


@dataclass(frozen=True)
class ResidualSamples:
    """Draws ``G(z) + L^{-T} u`` tiled into one mosaic."""

    mosaic: np.ndarray  #: float32, ``ceil(sqrt(count))`` images a row, 2-pixel gaps
    count: int
    seed: int


#: source keys for the images that are not runs, with the names the selector shows
FIXED_SOURCES = {"truth": "Ground truth", "adjoint": "Zero-filled adjoint"}
CUSTOM_SOURCE = ("custom", "Image from the comparison")


def run_key(run_id: int) -> str:
    return f"run:{run_id}"


class CovarianceInspector:
    """The covariance inspector's state and decisions, without Qt.

    It follows an :class:`~genreg_viewer.application.experiment.ExperimentState` (image, runs, measurement): while
    :attr:`following`, each new inspectable run becomes the inspected source; the user's own choice turns following
    off. When :attr:`active` (the tab is shown), it loads the covariance model of the image's weight set once and
    decodes each new source; clicked pixels are coalesced (while one row is being computed only the newest request
    is kept). Work goes to ``submit`` as :class:`CovarianceTask` objects; results come back through
    :meth:`task_done`/:meth:`task_failed` on the caller's thread, and those made for an earlier source are dropped.

    Events (psygnal): ``sources_changed()`` (the selectable sources or the chosen one), ``following_changed(bool)``,
    ``source_changed(InspectedSource)`` (a new image: its decoding was dropped), ``std_changed(StdDisplay)``,
    ``prepared(PreparedCovariance)``, ``row_shown(row, col, correlation)``, ``samples_drawn(ResidualSamples)``,
    ``status(str)``, ``model_failed(str)``, ``failed(str)`` (a computation failed).
    """

    sources_changed = Signal()
    following_changed = Signal(bool)
    source_changed = Signal(object)  # InspectedSource
    std_changed = Signal(object)  # StdDisplay
    prepared_changed = Signal(object)  # PreparedCovariance
    row_shown = Signal(int, int, object)  # row, col, correlation (H, W)
    samples_drawn = Signal(object)  # ResidualSamples
    status = Signal(str)
    model_failed = Signal(str)
    failed = Signal(str)

    def __init__(self, state: "ExperimentState", submit: Callable[[CovarianceTask], None]):
        self.state = state
        self.submit = submit
        #: loads the model of a weight set (tests inject a zero-argument loader of a small model)
        self.model_loader: Callable[..., Any] = load_covariance_model
        self.model: Any = None
        self.model_error: str | None = None
        self.loading = False
        self.model_weight_set: str | None = None  #: the weight set of the model loaded or loading
        self._model_load = 0  #: increases with every reset: a model loaded for an older set is dropped
        self.active = False  #: decode only while shown
        self.following = True
        self.calibrated = False  #: show the std map times the stored factor
        self.show_samples = False  #: the mean view shows residual samples (drawn when a decoding arrives)
        self.sample_count, self.sample_seed = 4, 0
        self.key: str | None = None  #: the chosen source
        self.custom_image: np.ndarray | None = None
        self.source: InspectedSource = InspectedSource("")
        self._source_decoded: InspectedSource | None = None  #: the source ``prepared`` (or its decoding) belongs to
        self.token = 0  #: increases with every new source; tasks carry the token they were made for
        self.preparing: int | None = None  #: token of the decoding in flight
        self.prepared: PreparedCovariance | None = None
        self.pixel: tuple[int, int] | None = None  #: the pixel whose row is shown
        self.correlation: np.ndarray | None = None  #: the shown correlation row, (H, W) in [-1, 1]
        self.pending_pixel: tuple[int, int] | None = None
        self.row_busy = False
        self.samples: ResidualSamples | None = None
        self.std: StdDisplay = StdDisplay(None, None, None, "Choose a run that reports its posterior std")
        state.image_changed.connect(self._image_changed)
        state.result_removed.connect(self.refresh_sources)
        state.results_cleared.connect(self.refresh_sources)
        state.result_added.connect(self._result_added)
        state.measurement_changed.connect(self._measurement_changed)

    # ------------------------------------------------------------------ sources
    def sources(self) -> list[tuple[str, str]]:
        """``(key, label)`` of every image that can be inspected, in the selector's order."""
        items: list[tuple[str, str]] = []
        if self.state.image is not None:
            items += list(FIXED_SOURCES.items())
            items += [(run_key(r.run_id), f"Run {r.run_id}: {r.label()}") for r in self.state.results]
        if self.custom_image is not None:
            items.append(CUSTOM_SOURCE)
        return items

    def refresh_sources(self, *_args: Any, select: str | None = None) -> None:
        """Rebuild the source list, keeping the chosen source (or choosing ``select``) where it still exists."""
        keys = [key for key, _label in self.sources()]
        wanted = select if select is not None else self.key
        self.key = wanted if wanted in keys else (keys[0] if keys else None)
        self.sources_changed.emit()
        self.update_source()

    def select(self, key: str | None, by_user: bool = False) -> None:
        """Inspect source ``key``; the user's own choice turns following off."""
        if by_user:
            self.set_following(False)
        if key != self.key:
            self.key = key
            self.sources_changed.emit()
        self.update_source()

    def set_following(self, on: bool) -> None:
        """Follow new runs (turning it on shows the newest inspectable run at once) or keep the chosen source."""
        if on == self.following:
            return
        self.following = on
        self.following_changed.emit(on)
        latest = next((r for r in reversed(self.state.results) if is_inspectable(r)), None)
        if on and latest is not None:
            self.select(run_key(latest.run_id))

    def inspect_image(self, image: np.ndarray) -> None:
        """Inspect an arbitrary image (e.g. a comparison tile): an explicit choice, so new runs do not replace it."""
        self.set_following(False)
        self.custom_image = np.asarray(image, dtype=np.float32)
        self.refresh_sources(select=CUSTOM_SOURCE[0])

    def image_weight_set(self):
        """The weight set of the current image (the chosen set, or in auto mode the one trained for its kind)."""
        return self.state.weight_set_choice()[0]

    def inspected_run(self) -> RunRecord | None:
        """The run being inspected, or None (ground truth, adjoint, an image from the comparison)."""
        key = self.key
        return self.state.result(int(key[4:])) if isinstance(key, str) and key.startswith("run:") else None

    def describe_source(self) -> InspectedSource:
        """The chosen source as it is now (a run's latent and decoding only where they belong to this model)."""
        key = self.key
        if key in FIXED_SOURCES:
            return InspectedSource(key, self.state.image if key == "truth" else self.state.adjoint)
        if key == CUSTOM_SOURCE[0]:
            return InspectedSource(key, self.custom_image)
        record = self.inspected_run()
        if key is None or record is None:
            return InspectedSource("")
        # a latent belongs to the weights it was found with: after a switch of weight set, encode instead
        current = self.image_weight_set().name
        same_weights = record.setting.get("weights", current) == current
        own_model = same_weights and self.model_loader is load_covariance_model
        return InspectedSource(key, record.image, covariance_latent(record) if same_weights else None,
                               record.arrays.get("std_map"), record.covariance if own_model else None, record)

    def update_source(self) -> None:
        """Show the chosen source: its std map always, and, when it is another image, drop the old decoding and
        start the new one (or use the one the run brought along)."""
        source = self.source = self.describe_source()
        self._update_std()
        if source.same_image(self._source_decoded):
            return  # the same image as before: keep its decoded covariance
        self._source_decoded = source
        self.token += 1  # results computed for the previous source are dropped
        self.prepared, self.samples, self.correlation = None, None, None
        self.source_changed.emit(source)
        if source.prepared is not None:
            self._use_prepared(source.prepared)
        elif source.image is not None and self.active:
            self.ensure_model()
            self._prepare_current()

    def _result_added(self, record: RunRecord) -> None:
        follow = self.following and is_inspectable(record)
        self.refresh_sources(select=run_key(record.run_id) if follow else None)

    def _image_changed(self) -> None:
        """Auto mode: an image of another kind (scan vs phantom) needs the other set's model."""
        if self.model_weight_set is not None and self.image_weight_set().name != self.model_weight_set:
            self.reset_model()
        self.refresh_sources()

    def _measurement_changed(self) -> None:
        if self.key == "adjoint":
            self.update_source()

    # ------------------------------------------------------------------ std map
    def set_calibrated(self, on: bool) -> None:
        """Show the std map raw (off) or times the stored factor of the run's weight set and setting (on)."""
        self.calibrated = on
        self._update_std()

    def _update_std(self) -> None:
        """The inspected run's std map, raw or, when calibrated, times the stored factor. A run saved by ``genreg
        recon --calibrated-std`` holds its map times ``info['std_scale']``: that is undone first, so the raw map is
        always the method's own."""
        record = self.source.record
        std_map = raw_std_map(record) if record is not None and self.source.std_map is not None else None
        found, why_not = std_scale_of_run(record, self.image_weight_set())
        scale = found if found is not None and self.calibrated else None
        if std_map is not None and scale is not None:
            std_map = scale.scale * std_map
        self.std = StdDisplay(std_map, scale, found, why_not)
        self.std_changed.emit(self.std)

    # ---------------------------------------------------------------- model work
    def set_active(self, on: bool) -> None:
        """Whether the inspector is shown: it loads its model and decodes only then."""
        self.active = on
        if on and self.source.image is not None:
            self.ensure_model()
            self._prepare_current()

    def ensure_model(self) -> None:
        """Start loading the covariance model of the image's weight set (once)."""
        if self.model is not None or self.loading or self.model_error is not None:
            return
        self.loading = True
        self.status.emit("Loading the covariance model…")
        weight_set = self.image_weight_set()
        self.model_weight_set = weight_set.name
        loader = self.model_loader
        function = (lambda: loader(weight_set)) if loader is load_covariance_model else loader
        self.submit(CovarianceTask("model", self._model_load, function))

    def reset_model(self, *_args: Any) -> None:
        """Forget the loaded model (the weight set changed): the source is decoded again by the new one."""
        self.model, self.model_error, self.loading = None, None, False
        self.model_weight_set = None
        self._model_load += 1  # a load still running is for the old set
        self._source_decoded = None
        self.update_source()

    def _prepare_current(self) -> None:
        """Decode ``L(z)`` for the chosen source unless it is decoded or being decoded already."""
        if self.model is None or self.prepared is not None or self.preparing == self.token:
            return
        source, model = self.source, self.model
        if source.image is None:
            return
        self.preparing = self.token
        self.status.emit("Decoding the covariance…")
        self.submit(CovarianceTask("prepare", self.token,
                                   lambda: prepare_covariance(model, source.image, source.latent)))

    def _use_prepared(self, prepared: PreparedCovariance) -> None:
        self.preparing = None
        self.prepared = prepared
        self.prepared_changed.emit(prepared)
        self.status.emit("Click or drag over the image")
        if self.pending_pixel is None and self.pixel is not None:
            self.pending_pixel = self.pixel  # the shown pixel's row, for the new image
        self._dispatch_row()
        if self.show_samples:
            self.draw_samples()

    def request_pixel(self, row: int, col: int) -> None:
        """Show the correlation row of pixel ``(row, col)`` (coalesced while a row is being computed)."""
        self.pending_pixel = (row, col)
        self._dispatch_row()

    def _dispatch_row(self) -> None:
        if self.row_busy or self.pending_pixel is None or self.prepared is None:
            return
        (row, col), prepared = self.pending_pixel, self.prepared
        self.pending_pixel = None
        self.row_busy = True
        self.submit(CovarianceTask("row", self.token, lambda: (row, col, prepared.correlation_row(row, col))))

    def set_show_samples(self, on: bool) -> None:
        """Show residual samples (drawn now when there are none) instead of the decoder mean, or the mean again."""
        self.show_samples = on
        if on and self.samples is None and self.prepared is not None:
            self.draw_samples()

    def draw_samples(self, count: int | None = None, seed: int | None = None) -> bool:
        """Draw ``count`` residual samples with ``seed`` (default: the last ones); False (and a status) when the
        model is not ready."""
        if count is not None:
            self.sample_count = count
        if seed is not None:
            self.sample_seed = seed
        if self.prepared is None:
            self.status.emit("The covariance model is not ready")
            return False
        prepared, count, seed = self.prepared, self.sample_count, self.sample_seed
        self.submit(CovarianceTask("samples", self.token,
                                   lambda: ResidualSamples(_mosaic(residual_samples(prepared, count, seed)),
                                                           count, seed)))
        return True

    # ------------------------------------------------------------------ results
    def task_done(self, task: CovarianceTask, result: Any) -> None:
        """``task`` finished with ``result`` (called on the inspector's thread)."""
        current = task.token == self.token
        if task.kind == "model":
            if task.token != self._model_load:
                return  # loaded for a weight set no longer in use
            self.loading = False
            self.model = result
            self.status.emit("Covariance model ready: click a pixel")
            self._prepare_current()
        elif task.kind == "prepare":
            if current:
                self._use_prepared(result)
            elif self.preparing == task.token:
                self.preparing = None
        elif task.kind == "row":
            self.row_busy = False
            row, col, correlation = result
            if current:
                self.pixel = (row, col)
                self.correlation = np.asarray(correlation, dtype=np.float32)
                self.row_shown.emit(row, col, self.correlation)
            elif self.pending_pixel is None:  # computed for an older image: ask again for the new one
                self.pending_pixel = (row, col)
            self._dispatch_row()
        elif task.kind == "samples" and current:
            self.samples = result
            self.samples_drawn.emit(result)

    def task_failed(self, task: CovarianceTask, message: str) -> None:
        """``task`` raised; ``message`` says what went wrong."""
        if task.kind == "model":
            if task.token != self._model_load:
                return
            self.loading = False
            self.model_error = message
            self.model_failed.emit(message)
            return
        if task.kind == "prepare" and self.preparing == task.token:
            self.preparing = None
        if task.kind == "row":
            self.row_busy = False
        self.status.emit("Covariance computation failed")
        self.failed.emit(message)


def _mosaic(draws: list[np.ndarray]) -> np.ndarray:
    """The draws tiled ``ceil(sqrt(n))`` a row with 2-pixel gaps."""
    return phantom_grid(np.stack(draws), columns=int(math.ceil(math.sqrt(len(draws)))), gap=2)
