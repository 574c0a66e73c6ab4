"""What the app's Uncertainty tab shows for one run, computed without Qt.

A run of a method with a posterior std map (mean+covar, mean+diagonal, latent-vi: ``arrays['std_map']``) also keeps a
few of the posterior samples it drew for that map (``arrays['samples']``, ``(K, H, W)``, at most
:data:`~genreg_viewer.application.runs.KEPT_SAMPLES`). With the ground truth ``x`` of the run (:func:`run_uncertainty`):

- the error map ``|x - x_hat|`` of its reconstruction ``x_hat`` (as the method returned it, not clipped, as
  ``genreg calibrate`` measures it);
- the calibration curve: the share ``C(k)`` of pixels with ``|x - x_hat| <= k s`` for k = 0, 0.1, ..., 4
  (:data:`~genreg_viewer.evaluation.calibration.CURVE_KS`) beside the Gaussian's ``P(|Z| <= k)``;
- the sparsification curves (Ilg et al. 2018): the mean error left after removing the pixels with the largest std,
  and after removing those with the largest true error (the best any map can do), and the area between them (AUSE).

All numbers come from :func:`genreg_viewer.evaluation.calibration.calibration_report` on the one image, so they are
those ``genreg calibrate`` reports for it. Without a ground truth only the std map and the samples are given. ``s``
is the raw std map times ``scale`` (the stored calibration factor when the user asks for it,
:func:`std_scale_of_run`); a map that ``genreg recon --calibrated-std`` saved scaled is undone to the raw map first
(:func:`raw_std_map`). The samples follow the same factor: shown scaled, each is ``m + scale (x_k - m)`` with ``m``
the mean of the kept samples, so their spread is the calibrated std (the std map is the samples' std about their
mean).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..evaluation import calibration
from .runs import RunRecord


@dataclass
class UncertaintyCurves:
    """The calibration and sparsification curves of one run against its ground truth (numpy float64 arrays)."""

    k: np.ndarray  #: multiples of the std, 0 .. 4
    coverage: np.ndarray  #: share of pixels with ``|x - x_hat| <= k s``
    gaussian: np.ndarray  #: ``P(|Z| <= k)``: the coverage of a calibrated map
    fraction: np.ndarray  #: share of pixels removed, ``j / 100``
    by_std: np.ndarray  #: mean error left after removing the largest-std pixels, relative to the mean error
    oracle: np.ndarray  #: the same removing the largest-error pixels
    ause: float  #: area between ``by_std`` and ``oracle`` (0 for a std that ranks the pixels as their errors do)
    headline: dict[str, float]  #: coverage at k = 1, 2, 3 (keys ``"1"``, ``"2"``, ``"3"``)
    correlation: float  #: Pearson correlation of the std and the error
    uce: float  #: uncertainty calibration error (intensity²) of the scaled map


@dataclass
class RunUncertainty:
    """What the Uncertainty tab shows for one run (:func:`run_uncertainty`)."""

    std_map: np.ndarray | None  #: the std map as shown: the raw map times ``scale`` (H, W), or None
    scale: float  #: the factor the raw map was multiplied by (1: the raw map)
    samples: np.ndarray | None  #: posterior samples (K, H, W), or None
    error: np.ndarray | None = None  #: ``|x - x_hat|`` (H, W), with a ground truth
    curves: UncertaintyCurves | None = None  #: with a ground truth and a std map
    notes: list[str] = field(default_factory=list)  #: why something is missing, in words


def has_uncertainty(record: RunRecord) -> bool:
    """Whether ``record`` has a std map or posterior samples to show."""
    return record.arrays.get("std_map") is not None or record.arrays.get("samples") is not None


def raw_std_map(record: RunRecord) -> np.ndarray | None:
    """The run's raw std map: ``arrays['std_map']``, divided by ``info['std_scale']`` where ``genreg recon
    --calibrated-std`` saved it scaled."""
    std_map = record.arrays.get("std_map")
    if std_map is None:
        return None
    written = record.info.get("std_scale", 1.0)
    if isinstance(written, (int, float)) and not isinstance(written, bool) and math.isfinite(written) \
            and written > 0 and written != 1.0:
        return (std_map / float(written)).astype(np.float32)
    return std_map


def run_samples(record: RunRecord) -> np.ndarray | None:
    """The run's posterior samples ``(K, H, W)`` float32, or None."""
    samples = record.arrays.get("samples")
    if samples is None:
        return None
    samples = np.asarray(samples, dtype=np.float32)
    return samples if samples.ndim == 3 and samples.shape[0] > 0 else None


def std_scale_of_run(record: RunRecord | None, current_weight_set) -> tuple[Any, str]:
    """``(StdScale or None, why not)``: the stored std scale factor that applies to ``record``
    (:func:`~genreg_viewer.evaluation.calibration.std_scale_for_run`, from the run's weight set, mask, sigma and
    parameters; ``current_weight_set``: the set of the image shown, used when the run names no other)."""
    from ..weight_sets import WeightSetError, resolve_weight_set

    if record is None or record.arrays.get("std_map") is None:
        return None, "Choose a run that reports its posterior std"
    setting = record.setting
    name = setting.get("weights", current_weight_set.name)
    try:
        weight_set = current_weight_set if name == current_weight_set.name else resolve_weight_set(name)
    except WeightSetError:
        return None, f"The run's weight set {name!r} is not available: no stored std scale factor"
    if "mask" not in setting or "sigma" not in setting:
        return None, "The run does not record its mask and noise: no stored factor can be chosen"
    try:
        found = calibration.std_scale_for_run(record.method, str(setting["mask"]), float(setting["sigma"]),
                                              setting.get("fraction"), record.params, weight_set)
    except ValueError as exc:  # an unreadable calibration table
        return None, str(exc)
    if found is None:
        return None, (f"No stored std scale factor for {record.method} in the {weight_set.name} set "
                      "(genreg calibrate TEST --fit-on VAL --write fits one)")
    return found, ""


def uncertainty_curves(truth: np.ndarray, estimate: np.ndarray, std: np.ndarray,
                       scale: float = 1.0) -> UncertaintyCurves:
    """The curves of ``scale * std`` for ``estimate`` against ``truth`` (three (H, W) arrays), from
    :func:`~genreg_viewer.evaluation.calibration.calibration_report` on the one image."""
    report = calibration.calibration_report(np.asarray(truth)[None], np.asarray(estimate)[None],
                                            np.asarray(std)[None], scale)
    k = np.asarray(report.curve_k, dtype=np.float64)
    return UncertaintyCurves(
        k=k, coverage=np.asarray(report.curve_coverage, dtype=np.float64),
        gaussian=np.array([calibration.gaussian_coverage(float(v)) for v in k]),
        fraction=np.asarray(report.sparsification_fraction, dtype=np.float64),
        by_std=np.asarray(report.sparsification_curve, dtype=np.float64),
        oracle=np.asarray(report.sparsification_oracle, dtype=np.float64),
        ause=float(report.ause), headline=dict(report.coverage), correlation=float(report.correlation),
        uce=float(report.uce),
    )


def scaled_samples(samples: np.ndarray | None, scale: float) -> np.ndarray | None:
    """Posterior samples ``(K, H, W)`` with their spread about their mean ``m`` multiplied by ``scale``:
    ``m + scale (x_k - m)`` (the samples unchanged for ``scale`` 1 or fewer than two samples)."""
    if samples is None or scale == 1.0 or len(samples) < 2:
        return samples
    centre = samples.mean(axis=0, dtype=np.float64)
    return (centre + scale * (samples - centre)).astype(np.float32)


def run_uncertainty(record: RunRecord, truth: np.ndarray | None, scale: float = 1.0) -> RunUncertainty:
    """The std map (raw times ``scale``), the samples and, with the ground truth ``truth`` (None: unknown), the error
    map and the curves of ``record``."""
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"the std scale factor must be positive, got {scale}")
    raw = raw_std_map(record)
    std_map = None if raw is None else (raw if scale == 1.0 else (scale * raw).astype(np.float32))
    result = RunUncertainty(std_map=std_map, scale=float(scale), samples=scaled_samples(run_samples(record), scale))
    if raw is None:
        result.notes.append("this run has no std map")
    if result.samples is None:
        result.notes.append("this run kept no posterior samples")
    if truth is None:
        result.notes.append("no ground truth: no error map or curves")
        return result
    truth = np.asarray(truth, dtype=np.float32)
    if truth.shape != record.image.shape:
        raise ValueError(f"the ground truth has shape {truth.shape}, the run's image {record.image.shape}")
    result.error = np.abs(truth - record.image).astype(np.float32)
    if raw is not None:
        result.curves = uncertainty_curves(truth, record.image, raw, scale)
    return result
