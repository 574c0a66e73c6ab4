"""The experiment the application works on: ground-truth image, sampling mask, noise, the simulated measurement
and the finished runs. No Qt: views (the GUI's panels, tests, scripts) read it and change it only through its
setters, which emit psygnal signals (synchronously, on the caller's thread: the GUI changes it on its own thread).

The measurement ``y = M F x + n`` is re-simulated on the CPU after every change (a 128x128 FFT takes well under a
millisecond), so the adjoint image and k-space views always match the controls.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from psygnal import Signal

from .. import defaults, metrics
from ..data.limits import check_seed
from ..physics import Measurement, MRIOperator, check_sigma, simulate_measurement
from ..physics.masks import MaskError, as_mask_array
from ..recon import Problem, ReconMethod, get_method
from .jobs import ReconJob
from .runs import RunRecord

#: name used for masks drawn with the brush or loaded from a file
CUSTOM_MASK_SPEC = "custom"


@dataclass
class ImageInfo:
    """Where the ground-truth image came from."""

    source: str = ""  #: file path or a description such as "knee phantom (seed 0)"
    slice_index: int | None = None
    num_slices: int = 1
    path: str | None = None  #: the file, when there is one (volumes are re-read for another slice)
    key: str | None = None  #: the HDF5 dataset chosen by the user, when the file needed one (re-used for slices)
    note: str = ""  #: what loading changed, for the status bar ("converted from colour (RGB) to grey, ...")

    def label(self) -> str:
        name = Path(self.source).name if self.path else self.source
        if self.num_slices > 1 and self.slice_index is not None:
            return f"{name}  (slice {self.slice_index + 1}/{self.num_slices})"
        return name


def _checked_image(image) -> np.ndarray:
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2:
        raise ValueError(f"the ground truth must be a 2-D image, got shape {image.shape}")
    if not np.isfinite(image).all():
        raise ValueError("the image contains NaN or infinite values")
    return image


def _checked_noise(sigma, seed) -> tuple[float, int]:
    return check_sigma(sigma), check_seed(seed, "the noise seed")


def _kspace_log_magnitude(image: np.ndarray) -> np.ndarray:
    k = MRIOperator.centred(torch.fft.fft2(torch.from_numpy(image).to(torch.complex64), norm="ortho"))
    return np.log1p(k.abs().numpy()).astype(np.float32)


def _simulated(image, mask, sigma, seed) -> tuple:
    """``(measurement, adjoint, measured_log_magnitude, error)`` of ``image`` under ``mask`` and the noise."""
    if image is None:
        return None, None, None, "no image loaded"
    if not mask.any():
        return None, None, None, "the mask is empty: draw or choose a pattern that samples k-space"
    measurement = simulate_measurement(image, mask, sigma, seed)
    adjoint = measurement.zero_filled()[0, 0].numpy().astype(np.float32)
    y = MRIOperator.centred(measurement.y)[0, 0]
    return measurement, adjoint, np.log1p(y.abs().numpy()).astype(np.float32), None


#: the side of the images the application works with (:data:`genreg_viewer.defaults.IMAGE_SIZE`): files and phantoms
#: are resized to it, and a session may hold images of at most this side (the views, the SSIM of every change and the
#: comparison maps run on the GUI thread)
IMAGE_SIZE = defaults.IMAGE_SIZE


class ExperimentState:
    """The ground truth, the mask, the noise, the simulated measurement and the list of finished runs.

    Signals (``state.image_changed.connect(callback)``): ``image_changed()``, ``measurement_changed()``,
    ``result_added(RunRecord)``, ``result_removed(run_id)``, ``results_cleared()``."""

    image_changed = Signal()
    measurement_changed = Signal()
    result_added = Signal(object)  # RunRecord
    result_removed = Signal(int)  # run_id
    results_cleared = Signal()

    def __init__(self, shape: tuple[int, int] = (IMAGE_SIZE, IMAGE_SIZE)):
        self.shape = shape
        self.image: np.ndarray | None = None
        self.image_info = ImageInfo()
        self.mask: np.ndarray = np.ones(shape, dtype=bool)
        self.mask_spec: str = "full"
        self.sigma: float = 0.0
        self.seed: int = 0
        self.measurement: Measurement | None = None
        self.measurement_error: str | None = None
        self.adjoint: np.ndarray | None = None
        self.kspace_log_magnitude: np.ndarray | None = None  #: log(1 + |F x|), centred
        self.measured_log_magnitude: np.ndarray | None = None  #: log(1 + |y|), centred
        self.results: list[RunRecord] = []
        self._adjoint_scores: tuple | None = None  #: (adjoint, image, scores) of the last adjoint_metrics call
        #: a finished run replaces earlier runs identical to it (:meth:`RunRecord.repeat_key`) instead of being
        #: added beside them as "#2"
        self.replace_repeats = False
        self.image_version = 0  #: increases with every new ground truth; runs of an older one are dropped
        self._next_run_id = 1

    # ------------------------------------------------------------------ setters
    def set_image(self, image: np.ndarray, info: ImageInfo) -> None:
        """Use ``image`` (H, W) in [0, 1] as the ground truth; runs of the previous image are dropped."""
        image = _checked_image(image)
        if image.shape != self.shape:  # the sampling panel rebuilds its pattern for the new size
            self.shape = image.shape
            self.mask = np.ones(image.shape, dtype=bool)
            self.mask_spec = "full"
        self.image = image
        self.image_info = info
        self.image_version += 1
        self.kspace_log_magnitude = _kspace_log_magnitude(image)
        self.clear_results()
        self.image_changed.emit()
        self._simulate()

    def restore(self, image: np.ndarray, info: ImageInfo, mask, mask_spec: str, sigma: float, seed: int,
                records: Sequence[RunRecord] = ()) -> None:
        """Replace everything at once (a restored session): every argument is checked and the measurement
        simulated before any attribute changes, so an error leaves the state exactly as it was; the signals
        (``results_cleared``, ``image_changed``, ``measurement_changed``, one ``result_added`` per record) follow."""
        image = _checked_image(image)
        mask = as_mask_array(mask)
        if mask.shape != image.shape:
            raise MaskError(f"the mask has shape {mask.shape} but the image is {image.shape}")
        sigma, seed = _checked_noise(sigma, seed)
        records = list(records)
        for record in records:
            if np.shape(record.image) != image.shape:
                raise ValueError(f"run {record.run_id} has an image of shape {np.shape(record.image)}, "
                                 f"the ground truth is {image.shape}")
        kspace = _kspace_log_magnitude(image)
        simulated = _simulated(image, mask, sigma, seed)
        had_results = bool(self.results)
        self.shape = image.shape
        self.image, self.image_info, self.kspace_log_magnitude = image, info, kspace
        restored_mask = self.mask = mask.copy()
        self.mask_spec = mask_spec
        self.sigma, self.seed = sigma, seed
        (self.measurement, self.adjoint, self.measured_log_magnitude, self.measurement_error) = simulated
        self.image_version += 1
        self.results = []
        if had_results:
            self.results_cleared.emit()
        self.image_changed.emit()
        if self.mask is not restored_mask or self.mask_spec != mask_spec:  # a panel re-applied its own pattern
            self.mask, self.mask_spec = restored_mask, mask_spec
            (self.measurement, self.adjoint, self.measured_log_magnitude, self.measurement_error) = simulated
        self.measurement_changed.emit()
        for record in records:
            self.add_result(record)

    def set_mask(self, mask, spec: str = CUSTOM_MASK_SPEC) -> None:
        mask = as_mask_array(mask)
        if mask.shape != self.shape:
            raise MaskError(f"the mask has shape {mask.shape} but the image is {self.shape}")
        self.mask = mask.copy()
        self.mask_spec = spec
        self._simulate()

    def set_noise(self, sigma: float, seed: int) -> None:
        self.sigma, self.seed = _checked_noise(sigma, seed)
        self._simulate()

    def _simulate(self) -> None:
        (self.measurement, self.adjoint, self.measured_log_magnitude, self.measurement_error) = _simulated(
            self.image, self.mask, self.sigma, self.seed)
        self.measurement_changed.emit()

    # ------------------------------------------------------------------ queries
    @property
    def ready(self) -> bool:
        return self.measurement is not None

    def setting(self) -> dict[str, Any]:
        """The measurement setting recorded with each run."""
        return {
            "mask": self.mask_spec,
            "fraction": float(self.mask.mean()),
            "sigma": self.sigma,
            "seed": self.seed,
            "image": self.image_info.label(),
        }

    def ground_truth_tensor(self) -> torch.Tensor:
        if self.image is None:
            raise ValueError("no image loaded")
        return torch.from_numpy(self.image)[None, None].clone()

    def weight_set_choice(self):
        """``(WeightSet, why)``: the set the next run of this image uses -- the chosen set, or in auto mode the one
        trained for the image's kind (:func:`~genreg_viewer.weight_sets.weight_set_choice`; an image without a file,
        a generated phantom, counts as synthetic)."""
        from ..weight_sets import weight_set_choice

        return weight_set_choice(self.image_info.path)

    def problem(self, device: torch.device | str = "cpu") -> Problem:
        """A snapshot problem for a run (later edits of the mask or noise do not affect it), with the weight set
        this image's runs use (:meth:`weight_set_choice`: the picker's set, or in auto mode the one trained for the
        image's kind), so the defaults a panel shows (tuned lambda, alpha, ...) are the ones the run gets."""
        if self.measurement is None:
            raise ValueError(self.measurement_error or "no measurement")
        measurement = Measurement(
            self.measurement.y.clone(), MRIOperator(self.mask.copy()), self.sigma, self.seed
        )
        return Problem(measurement, self.ground_truth_tensor(), seed=self.seed, device=torch.device(device),
                       weight_set=self.weight_set_choice()[0])

    def make_job(self, method: ReconMethod | str, params: dict[str, Any] | None = None,
                 iterations: int | None = None, device: str = "cpu") -> ReconJob:
        """A job that runs ``method`` on a snapshot of the current measurement (``ValueError`` when the method is
        unavailable or there is no measurement): the next run id, the method's title, the setting recorded with the
        run and the weight set this image uses (:meth:`weight_set_choice`), fixed now."""
        method = get_method(method) if isinstance(method, str) else method
        ok, why = method.available()
        if not ok:
            raise ValueError(f"{method.title} is not available: {why}")
        weight_set, _why = self.weight_set_choice()
        problem = self.problem("cpu")
        return ReconJob(
            job_id=self.next_run_id(),
            method=method.name,
            title=method.title,
            params=dict(params or {}),
            iterations=method.default_iterations if iterations is None else int(iterations),
            device=device,
            measurement=problem.measurement,
            ground_truth=problem.ground_truth,
            seed=problem.seed,
            setting={**self.setting(), "weights": weight_set.name},
            image_version=self.image_version,
            weight_set=weight_set,
        )

    def accept(self, job: ReconJob, record: RunRecord) -> bool:
        """Add the finished ``record`` of ``job`` unless the job was made for an earlier image (its result is then
        dropped); True when it was added. With :attr:`replace_repeats` the runs identical to it are removed first."""
        if job.image_version != self.image_version:
            return False
        if self.replace_repeats:
            key = record.repeat_key()
            for repeat in [r for r in self.results if r.repeat_key() == key]:
                self.remove_result(repeat.run_id)
        self.add_result(record)
        return True

    def adjoint_metrics(self) -> tuple[float, float] | None:
        """PSNR and SSIM of the adjoint (clipped to [0, 1]); computed once per measurement (several panels ask)."""
        if self.adjoint is None or self.image is None:
            return None
        cached = self._adjoint_scores
        if cached is not None and cached[0] is self.adjoint and cached[1] is self.image:
            return cached[2]
        clipped = np.clip(self.adjoint, 0, 1)
        scores = float(metrics.psnr(clipped, self.image)[0]), float(metrics.ssim(clipped, self.image)[0])
        self._adjoint_scores = (self.adjoint, self.image, scores)
        return scores

    def result(self, run_id: int) -> RunRecord | None:
        return next((r for r in self.results if r.run_id == run_id), None)

    # ------------------------------------------------------------------ results
    def next_run_id(self) -> int:
        run_id = self._next_run_id
        self._next_run_id += 1
        return run_id

    def add_result(self, record: RunRecord) -> None:
        self.results.append(record)
        self._next_run_id = max(self._next_run_id, record.run_id + 1)
        self.result_added.emit(record)

    def remove_result(self, run_id: int) -> None:
        before = len(self.results)
        self.results = [r for r in self.results if r.run_id != run_id]
        if len(self.results) != before:
            self.result_removed.emit(run_id)

    def clear_results(self) -> list[RunRecord]:
        """Remove every run; returns them (for :meth:`restore_results`)."""
        removed = self.results
        if removed:
            self.results = []
            self.results_cleared.emit()
        return removed

    def restore_results(self, records: list[RunRecord]) -> int:
        """Put back runs removed by :meth:`clear_results` (those of the image still shown, not already present);
        returns how many came back."""
        present = {r.run_id for r in self.results}
        restored = 0
        for record in records:
            if record.run_id not in present and np.shape(record.image) == self.shape:
                self.add_result(record)
                restored += 1
        return restored
