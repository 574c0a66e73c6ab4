"""Calibration of the posterior std maps (``extras['std_map']``) of mean+covar, mean+diagonal and latent-vi.

A std map ``s`` of a reconstruction ``x_hat`` claims that the error ``e = x - x_hat`` of each pixel is roughly
Gaussian with std ``s``. For a calibrated map the empirical coverage

    C(k) = fraction of pixels with |x - x_hat| <= k s

equals the Gaussian's ``P(|Z| <= k) = erf(k / sqrt 2)``: 68.27 %, 95.45 %, 99.73 % for k = 1, 2, 3. Below the curve
the std is too small (over-confident), above it too large. :func:`calibration_report` measures ``C(k)`` for
k = 1, 2, 3 and on a fine grid (the calibration plot), and the Pearson correlation of ``s`` with ``|e|`` (pooled over
every pixel of every image, and the mean of the per-image correlations): whether the map at least points at where
the errors are.

A miscalibrated map can be rescaled by one factor ``c`` (``s -> c s``). :func:`fit_scale` picks the ``c`` that
minimises ``sum_k (C_c(k) - erf(k / sqrt 2))^2`` over a fine log grid, on *validation* images, by default for k = 2
alone (:data:`FIT_KS`: the +-2 std interval then holds 95.45 % of the errors; with heavy-tailed errors no single
factor can match k = 1, 2 and 3 at once, and ``--fit-k 1,2,3`` trades them off equally); the factor is
stored per method and setting in the weight set's ``tuned/calibration.json`` (:func:`write_calibration`) and applied
only when asked (``genreg calibrate --apply``, :func:`stored_scale`; for one run ``genreg recon --calibrated-std`` and
the app's *Calibrated std* box, :func:`std_scale_for_run`); a run that applies it says so in its notes.

Two further summaries of a map (:func:`calibration_report`, both pooled over every pixel of every image):

- **AUSE**, the area under the sparsification error (Ilg et al. 2018, *Uncertainty Estimates and Multi-Hypotheses
  Networks for Optical Flow*, ECCV; :func:`sparsification_curves`): does the *ranking* of the std match the ranking of
  the errors? Remove the fraction ``f`` of pixels with the largest std and take the mean absolute error of the rest,
  relative to the mean absolute error of all pixels; the oracle removes the pixels with the largest true ``|e|``
  instead. AUSE is the mean over ``f = 0, 1/F, ..., (F - 1)/F`` (F = :data:`SPARSIFICATION_STEPS`) of curve minus
  oracle: 0 for a std that ranks the pixels as their errors do, about ``mean_f (1 - oracle(f))`` for a std that
  says nothing about the errors. It does not depend on the scale factor.
- **UCE**, the uncertainty calibration error (Laves et al. 2020, *Well-Calibrated Regression Uncertainty in Medical
  Imaging with Deep Learning*, MIDL; :func:`uncertainty_calibration_error`): the variance ``s^2`` is binned into
  :data:`UCE_BINS` bins of equal width over ``[0, max s^2]`` and ``UCE = sum_m |B_m|/n |MSE(B_m) - mean s^2(B_m)|``,
  in intensity units squared (0 for a map whose variance matches the squared error within every bin).

Conformal intervals (:func:`conformal_quantile`, ``genreg calibrate --conformal ALPHA``): split conformal prediction
(Vovk et al. 2005; Angelopoulos & Bates 2023, *Conformal Prediction: A Gentle Introduction*) with the score
``|x - x_hat| / s``: ``q`` is the ``ceil((n + 1)(1 - alpha))``-th smallest of the n validation scores, and the
interval ``x_hat +- q s`` then covers a new exchangeable pixel with probability >= 1 - alpha. Pixels of one image are
not exchangeable with those of another image, so ``level="image"`` offers the per-image guarantee of conformal risk
control (Angelopoulos et al. 2024, ICLR, Theorem 1): with m validation images, ``q`` is the smallest value whose pooled
miscoverage is at most ``((m + 1) alpha - 1) / m``, and then the *expected fraction* of a new image's pixels outside
its interval is <= alpha. ``q`` is stored next to the scale factor (:func:`write_calibration`, :func:`stored_conformal`)
and always multiplies the raw std.

What the maps are: mean+covar / mean+diagonal report the std of the Gaussian ``p(x | y, z*)`` at the optimal latent
``z*`` (perturb-and-MAP samples, :mod:`genreg_viewer.recon.generative.posterior`), which ignores the uncertainty
of ``z`` and inherits the tuned ``lambda`` (chosen for PSNR, not for calibration); latent-vi the spread of ``G(z)``
over its variational posterior ``q(z)``. ``x_hat`` is the reconstruction as the method returns it (not clipped).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..defaults import IMAGE_SHAPE
from ..validators import is_finite_number

#: the methods that return ``extras['std_map']``
STD_MAP_METHODS = ("mean+covar", "mean+diagonal", "latent-vi")
#: the k of the headline coverage figures
HEADLINE_KS = (1.0, 2.0, 3.0)
#: the k whose coverage the fitted factor matches by default (the +-2 std interval)
FIT_KS = (2.0,)
#: the k grid of the calibration curve
CURVE_KS = tuple(round(0.1 * i, 1) for i in range(0, 41))
#: the file in a weight set's ``tuned/`` folder that holds the fitted scale factors
CALIBRATION_FILE = "calibration.json"
#: the number of removed fractions ``f = j / F`` (j = 0 .. F - 1) of the sparsification curves and AUSE
SPARSIFICATION_STEPS = 100
#: the number of equal-width variance bins of the UCE
UCE_BINS = 20
#: the guarantees of a conformal quantile: a new pixel (split conformal) or a new image's mean (risk control)
CONFORMAL_LEVELS = ("pixel", "image")


def gaussian_coverage(k: float) -> float:
    """``P(|Z| <= k)`` for a standard normal ``Z``: ``erf(k / sqrt 2)``."""
    return math.erf(k / math.sqrt(2.0))


def _as_array(values) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().double().numpy()
    return np.asarray(values, dtype=np.float64)


def standardised_errors(truth, estimate, std, scale: float = 1.0) -> np.ndarray:
    """``|x - x_hat| / (scale * s)`` for every pixel, flattened (float64). A zero std gives 0 for a zero error and
    ``inf`` otherwise."""
    truth, estimate, std = (_as_array(a) for a in (truth, estimate, std))
    if not truth.shape == estimate.shape == std.shape:
        raise ValueError(f"truth, estimate and std must have one shape, got {truth.shape}, {estimate.shape}, "
                         f"{std.shape}")
    if not np.isfinite(std).all() or (std < 0).any():
        raise ValueError("the std map must be finite and non-negative")
    if not (np.isfinite(truth).all() and np.isfinite(estimate).all()):
        raise ValueError("the ground truth and the reconstruction must be finite (NaN or infinite pixels found)")
    if not scale > 0:
        raise ValueError(f"the scale factor must be positive, got {scale}")
    error = np.abs(truth - estimate).ravel()
    scaled = scale * std.ravel()
    with np.errstate(divide="ignore", invalid="ignore"):
        z = error / scaled
    z[(scaled == 0) & (error == 0)] = 0.0
    return z


def coverage(z: np.ndarray, ks: Sequence[float]) -> list[float]:
    """The fraction of standardised errors ``z`` that are ``<= k``, for each ``k``."""
    ordered = np.sort(np.asarray(z, dtype=np.float64).ravel())
    if ordered.size == 0:
        raise ValueError("no pixels to measure the coverage on")
    return [float(np.searchsorted(ordered, k, side="right") / ordered.size) for k in ks]


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson's correlation of two arrays (NaN when one is constant)."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    a, b = a - a.mean(), b - b.mean()
    denominator = math.sqrt(float((a * a).sum()) * float((b * b).sum()))
    return float((a * b).sum() / denominator) if denominator > 0 else float("nan")


def _removed_error_sums(error: np.ndarray, key: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """``sum |e|`` of the ``removed[j]`` pixels with the largest ``key``; pixels of equal ``key`` are removed in a
    random order, so within a run of ties the sum is interpolated linearly (its expected value)."""
    order = np.argsort(-key, kind="stable")
    ordered_key, cumulative = key[order], np.concatenate([[0.0], np.cumsum(error[order])])
    boundaries = np.concatenate([[0], np.flatnonzero(np.diff(ordered_key) != 0) + 1, [key.size]])
    return np.interp(removed, boundaries, cumulative[boundaries])


def _checked_error_and_std(error, std, count: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    """``error`` and ``std`` flattened (float64), refused (``ValueError``) unless they are finite and of one
    non-empty shape and ``count`` (the curve's ``name``: steps or bins) is a positive integer."""
    error, std = _as_array(error).ravel(), _as_array(std).ravel()
    if error.shape != std.shape or error.size == 0:
        raise ValueError(f"error and std must have one non-empty shape, got {error.shape} and {std.shape}")
    if not (np.isfinite(error).all() and np.isfinite(std).all()):
        raise ValueError("the errors and the std map must be finite (NaN or infinite pixels found)")
    if not (isinstance(count, int) and count >= 1):
        raise ValueError(f"{name} must be a positive integer, got {count!r}")
    return error, std


def sparsification_curves(error, std, steps: int = SPARSIFICATION_STEPS) -> tuple[np.ndarray, np.ndarray,
                                                                                   np.ndarray]:
    """The sparsification curves of Ilg et al. (2018), on the mean absolute error: ``(f, curve, oracle)`` for the
    fractions ``f_j = j / steps``, j = 0 .. steps - 1.

    ``curve_j`` is the mean ``|e|`` of the pixels left after removing the ``floor(j n / steps)`` pixels with the
    largest std, divided by the mean ``|e|`` of all n pixels (so ``curve_0 = 1``); ``oracle_j`` the same after removing
    the pixels with the largest ``|e|``. Pixels of equal std are removed in random order (the expected value is
    taken), so a constant map gives ``curve = 1``. ``error`` and ``std`` are arrays of one shape; both curves are NaN
    when every error is 0."""
    error, std = _checked_error_and_std(error, std, steps, "steps")
    error = np.abs(error)
    n = error.size
    fractions = np.arange(steps) / steps
    removed = (np.arange(steps) * n) // steps  # at most n - 1: a pixel is always left
    kept = n - removed
    total = float(error.sum())
    if total == 0:
        nan = np.full(steps, np.nan)
        return fractions, nan, nan.copy()
    mean = total / n
    curve = (total - _removed_error_sums(error, std, removed)) / kept / mean
    oracle = (total - _removed_error_sums(error, error, removed)) / kept / mean
    return fractions, curve, oracle


def ause(error, std, steps: int = SPARSIFICATION_STEPS) -> float:
    """The area under the sparsification error (Ilg et al. 2018): ``mean_j (curve_j - oracle_j)`` of
    :func:`sparsification_curves` (mean absolute error, normalised by that of all pixels; a left Riemann sum over
    ``f`` in ``[0, 1)``). 0 when the std ranks the pixels as their errors do; NaN when every error is 0."""
    _, curve, oracle = sparsification_curves(error, std, steps)
    return float(np.mean(curve - oracle))


def uncertainty_calibration_error(error, std, bins: int = UCE_BINS) -> float:
    """The uncertainty calibration error of Laves et al. (2020), in intensity units squared.

    The variances ``s_i^2`` fall into ``bins`` bins of equal width over ``[0, max s^2]`` (bin m holds
    ``m w <= s^2 < (m + 1) w``, ``w = max s^2 / bins``, the largest variance in the last bin) and

        UCE = sum_m |B_m| / n * | mean_{B_m} e^2 - mean_{B_m} s^2 | = 1/n sum_m | sum_{B_m} (e_i^2 - s_i^2) |

    (``e``: the errors ``x - x_hat``; a constant map is one bin: ``|MSE - s^2|``)."""
    error, std = _checked_error_and_std(error, std, bins, "bins")
    variance = std**2
    largest = float(variance.max())
    index = np.zeros(variance.size, dtype=np.int64) if largest == 0 else \
        np.minimum((variance / largest * bins).astype(np.int64), bins - 1)
    gap = np.bincount(index, weights=error**2 - variance, minlength=bins)
    return float(np.abs(gap).sum() / error.size)


def check_conformal_sample(alpha: float, pixels: int, images: int, level: str = "pixel") -> None:
    """A one-line ``ValueError`` when ``alpha`` is not in (0, 1) or the validation set is too small for it: split
    conformal needs ``ceil((n + 1)(1 - alpha)) <= n`` pixels, i.e. ``n >= (1 - alpha) / alpha``; the per-image
    level ``m >= 1 / alpha - 1`` images."""
    if not is_finite_number(alpha) or not 0 < alpha < 1:
        raise ValueError(f"the conformal alpha must be a number in (0, 1), got {alpha!r}")
    if level not in CONFORMAL_LEVELS:
        raise ValueError(f"the conformal level must be one of {', '.join(CONFORMAL_LEVELS)}, got {level!r}")
    if level == "pixel" and _conformal_rank(pixels, alpha) > pixels:
        raise ValueError(f"conformal alpha {alpha:g}: {pixels} validation pixels are too few (need at least "
                         f"{math.ceil((1 - alpha) / alpha - 1e-9)}); give more --fit-on images or a larger alpha")
    if level == "image" and (images + 1) * alpha - 1 < -1e-12:
        raise ValueError(f"conformal alpha {alpha:g} per image: {images} validation images are too few (need at "
                         f"least {math.ceil(1 / alpha - 1 - 1e-9)}); give more --fit-on images or a larger alpha")


def _conformal_rank(n: int, alpha: float) -> int:
    """``ceil((n + 1)(1 - alpha))`` (1-based), robust to the rounding of ``(n + 1)(1 - alpha)``."""
    value = (n + 1) * (1 - alpha)
    return max(1, math.ceil(value - 1e-12 * max(1.0, value)))


def conformal_quantile(scores, alpha: float, level: str = "pixel") -> float:
    """The split-conformal quantile ``q`` of the validation scores ``|x - x_hat| / s`` (an array with the images
    along the first axis, e.g. ``(m, 1, H, W)``), so that ``x_hat +- q s`` covers at least ``1 - alpha``.

    ``level="pixel"``: ``q`` is the ``ceil((n + 1)(1 - alpha))``-th smallest of the n pooled scores; for a new pixel
    exchangeable with the validation pixels ``P(|x - x_hat| <= q s) >= 1 - alpha`` (Vovk et al. 2005; Angelopoulos &
    Bates 2023, section 1). ``level="image"``: conformal risk control (Angelopoulos et al. 2024, Theorem 1) with the
    loss "fraction of an image's pixels outside the interval" (bounded by 1): ``q`` is the smallest score whose pooled
    miscoverage (the mean over the m images, all of one size) is at most ``((m + 1) alpha - 1) / m``; then the
    expected miscoverage of a new exchangeable image is at most alpha. Infinite scores (a zero std with an error) are
    allowed unless ``q`` would be one of them; NaN scores are an error."""
    z = _as_array(scores)
    if z.ndim == 0 or z.size == 0:
        raise ValueError("no validation scores to fit a conformal quantile on")
    if np.isnan(z).any():
        raise ValueError("the conformal scores contain NaN (a NaN reconstruction or std map?)")
    if (z < 0).any():
        raise ValueError("conformal scores |x - x_hat| / s must be non-negative")
    images, n = int(z.shape[0]), int(z.size)
    check_conformal_sample(alpha, n, images, level)
    ordered = np.sort(z.ravel())
    if level == "pixel":
        rank = _conformal_rank(n, alpha)
    else:
        allowed = max(0.0, ((images + 1) * alpha - 1) / images)  # the pooled miscoverage q may leave
        rank = max(1, math.ceil(n * (1 - allowed) - 1e-12 * n))
    q = float(ordered[rank - 1])
    if not math.isfinite(q):
        raise ValueError(f"conformal alpha {alpha:g}: more than alpha of the validation pixels have a zero std with a "
                         "non-zero error, so no finite multiple of the std covers them")
    return q


@dataclass
class CalibrationReport:
    """Coverage and correlation of a std map on some images (see the module docstring)."""

    images: int
    pixels: int
    scale: float  #: the factor the std was multiplied by before measuring (1: the raw map)
    coverage: dict[str, float]  #: ``"1"``, ``"2"``, ``"3"`` -> empirical C(k)
    nominal: dict[str, float]  #: the Gaussian's P(|Z| <= k)
    correlation: float  #: Pearson(std, |error|), all pixels pooled
    correlation_per_image: float  #: mean over images of Pearson(std, |error|)
    rmse: float  #: root mean squared error of x_hat
    rms_std: float  #: root mean square of the (scaled) std: equals rmse for a calibrated map on average
    ause: float = float("nan")  #: area under the sparsification error, pooled (:func:`ause`; scale-free)
    ause_per_image: float = float("nan")  #: mean over images of their AUSE
    uce: float = float("nan")  #: the UCE of the scaled std (:func:`uncertainty_calibration_error`)
    curve_k: list[float] = field(default_factory=lambda: list(CURVE_KS))
    curve_coverage: list[float] = field(default_factory=list)
    #: the pooled sparsification curves (:func:`sparsification_curves`) at the removed fractions
    sparsification_fraction: list[float] = field(default_factory=list)
    sparsification_curve: list[float] = field(default_factory=list)
    sparsification_oracle: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def calibration_report(truth, estimate, std, scale: float = 1.0) -> CalibrationReport:
    """Measure the calibration of ``scale * std`` for ``estimate`` against ``truth`` (arrays ``(B, 1, H, W)`` or any
    shape with the images along the first axis): coverage, correlation, AUSE (of the std's ranking, so the same at
    any scale) and UCE (of ``scale * std``), see the module docstring."""
    z = standardised_errors(truth, estimate, std, scale)
    truth_a, estimate_a, std_a = (_as_array(a) for a in (truth, estimate, std))
    error = np.abs(truth_a - estimate_a)
    per_image = [pearson(std_a[i], error[i]) for i in range(error.shape[0])]
    per_image = [value for value in per_image if math.isfinite(value)]
    fractions, curve, oracle = sparsification_curves(error, std_a)
    per_image_ause = [ause(error[i], std_a[i]) for i in range(error.shape[0])]
    per_image_ause = [value for value in per_image_ause if math.isfinite(value)]
    return CalibrationReport(
        images=int(error.shape[0]), pixels=int(z.size), scale=float(scale),
        coverage={f"{k:g}": value for k, value in zip(HEADLINE_KS, coverage(z, HEADLINE_KS))},
        nominal={f"{k:g}": gaussian_coverage(k) for k in HEADLINE_KS},
        correlation=pearson(std_a, error),
        correlation_per_image=float(np.mean(per_image)) if per_image else float("nan"),
        rmse=float(np.sqrt(np.mean(error**2))), rms_std=float(scale * np.sqrt(np.mean(std_a**2))),
        ause=float(np.mean(curve - oracle)),
        ause_per_image=float(np.mean(per_image_ause)) if per_image_ause else float("nan"),
        uce=uncertainty_calibration_error(error, scale * std_a),
        curve_coverage=coverage(z, CURVE_KS),
        sparsification_fraction=fractions.tolist(), sparsification_curve=curve.tolist(),
        sparsification_oracle=oracle.tolist(),
    )


def fit_scale(z: np.ndarray, ks: Sequence[float] = FIT_KS) -> float:
    """The factor ``c`` that minimises ``sum_k (C(z <= k c) - erf(k / sqrt 2))^2`` over ``ks`` (``z``: standardised
    errors of the raw map; default k = 2 only, i.e. ``c`` = the 95.45 % quantile of ``z`` over 2), searched on 4001
    log-spaced values between 1e-3 and 1e3; among equally good values (the coverage is a step function) the
    geometric middle of the best run is taken."""
    ordered = np.sort(np.asarray(z, dtype=np.float64).ravel())
    if ordered.size == 0:
        raise ValueError("no pixels to fit a scale on")
    scales = np.logspace(-3, 3, 4001)
    targets = np.array([gaussian_coverage(k) for k in ks])
    covered = np.stack([np.searchsorted(ordered, k * scales, side="right") / ordered.size for k in ks], axis=1)
    loss = ((covered - targets) ** 2).sum(axis=1)
    best = np.flatnonzero(loss <= loss.min() + 1e-15)
    run_end = best[0]
    while run_end + 1 < len(scales) and loss[run_end + 1] <= loss.min() + 1e-15:
        run_end += 1
    return float(math.sqrt(scales[best[0]] * scales[run_end]))


# --------------------------------------------------------------------------------------------- running the methods
@dataclass
class StdMapRun:
    """Ground truth, reconstruction and std map of some images for one method (CPU float32 ``(N, 1, H, W)``)."""

    method: str
    truth: torch.Tensor
    estimate: torch.Tensor
    std: torch.Tensor
    params: dict[str, Any]
    seconds: float


def run_with_std_maps(method_name: str, selection, mask: np.ndarray, sigma: float, seed: int, batch: int = 8,
                      device: torch.device | str = "cpu", params: dict[str, Any] | None = None,
                      progress=None, weight_set=None) -> StdMapRun:
    """Run ``method_name`` (one of :data:`STD_MAP_METHODS`, or any method returning ``extras['std_map']``) on the
    images of ``selection`` (an :class:`~genreg_viewer.evaluation.evaluate.EvaluationImages`), in batches, with the
    measurements of ``genreg evaluate`` (per-image noise seeds), the networks and tuned defaults of ``weight_set``
    (default: the bundled default set) - the set whose ``calibration.json`` the factor is read from or written to."""
    from ..recon import run_method
    from .evaluate import batches, make_batch_problem

    estimates, stds = [], []
    used: dict[str, Any] = {}
    start = time.perf_counter()
    for positions in batches(len(selection.indices), batch):
        index = torch.as_tensor(list(positions))
        problem = make_batch_problem(selection.images[index], selection.indices[list(positions)], mask, sigma, seed,
                                     device, weight_set)
        result = run_method(method_name, problem, params or {})
        std_map = result.extras.std_map
        if std_map is None:
            raise ValueError(f"method {method_name!r} returned no std map (extras['std_map']); use one of "
                             f"{', '.join(STD_MAP_METHODS)} with posterior samples > 0")
        estimates.append(result.image.float())
        stds.append(torch.as_tensor(std_map).float())
        used = result.params
        if progress is not None:
            progress(len(positions))
    return StdMapRun(method_name, selection.images.float(), torch.cat(estimates), torch.cat(stds), used,
                     time.perf_counter() - start)


# -------------------------------------------------------------------------------------------------- stored scales
def calibration_path(weight_set=None) -> Path:
    """``tuned/calibration.json`` of the weight set (default: the bundled default set); the bundled phantom set keeps
    its tuned tables in ``resources/tuned/``. A set never reads another set's factors."""
    from ..paths import RESOURCES_DIR
    from ..weight_sets import BUNDLED_SETS, DEFAULT_SET, default_weight_set

    weight_set = weight_set or default_weight_set()
    default = BUNDLED_SETS[DEFAULT_SET]
    if weight_set.name == DEFAULT_SET and default.is_dir() and weight_set.folder.resolve() == default.resolve():
        return RESOURCES_DIR / "tuned" / CALIBRATION_FILE
    return weight_set.tuned_dir / CALIBRATION_FILE


#: bounds on a calibration table (a weight set's folder is untrusted): its size, its entries (each placed by its
#: mask, built at its ``shape``), a mask spec's length, the scale factor and the image side an entry may name
MAX_CALIBRATION_BYTES = 4 * 2**20
MAX_CALIBRATION_ENTRIES = 512
MAX_MASK_SPEC_CHARS = 256
MAX_ENTRY_SIDE = 1024
SCALE_RANGE = (1e-6, 1e6)
#: conformal quantiles an entry may hold (one per alpha and level)
MAX_CONFORMAL_ENTRIES = 16
#: mask specs an entry may be placed by without reading a file
GENERATED_MASKS = ("radial", "golden", "cartesian", "random", "full")


def _check_entry(entry: Any, where: str) -> None:
    """One line naming ``where`` (file, method, entry) and the field, for an entry of the wrong shape."""
    from ..physics.noise import MAX_SIGMA

    if not isinstance(entry, dict):
        raise ValueError(f"{where}: an entry must be a JSON object, got {type(entry).__name__}")
    mask, sigma, scale = entry.get("mask"), entry.get("sigma"), entry.get("scale")
    if not isinstance(mask, str) or not mask.strip() or len(mask) > MAX_MASK_SPEC_CHARS:
        raise ValueError(f"{where}: 'mask' must be a mask spec (text of at most {MAX_MASK_SPEC_CHARS} characters), "
                         f"got {str(mask)[:40]!r}")
    if not is_finite_number(sigma) or not 0 <= sigma <= MAX_SIGMA:
        raise ValueError(f"{where}: 'sigma' must be a number in [0, {MAX_SIGMA:g}], got {sigma!r}")
    if not is_finite_number(scale) or not SCALE_RANGE[0] <= scale <= SCALE_RANGE[1]:
        raise ValueError(f"{where}: 'scale' must be a positive finite number in [{SCALE_RANGE[0]:g}, "
                         f"{SCALE_RANGE[1]:g}], got {scale!r}")
    fraction = entry.get("sampling_fraction")
    if fraction is not None and (not is_finite_number(fraction) or not 0 < fraction <= 1):
        raise ValueError(f"{where}: 'sampling_fraction' must be a number in (0, 1], got {fraction!r}")
    shape = entry.get("shape")
    if shape is not None and (not isinstance(shape, list) or len(shape) != 2 or not all(
            isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= MAX_ENTRY_SIDE for n in shape)):
        raise ValueError(f"{where}: 'shape' must be two integers in [1, {MAX_ENTRY_SIDE}], got {str(shape)[:40]}")
    ks = entry.get("fitted_for_k", list(FIT_KS))
    if not isinstance(ks, list) or not 1 <= len(ks) <= 16 or not all(is_finite_number(k) and 0 < k <= 10 for k in ks):
        raise ValueError(f"{where}: 'fitted_for_k' must be a list of 1 to 16 numbers in (0, 10], got {str(ks)[:40]}")
    conformal = entry.get("conformal", [])
    if not isinstance(conformal, list) or len(conformal) > MAX_CONFORMAL_ENTRIES:
        raise ValueError(f"{where}: 'conformal' must be a list of at most {MAX_CONFORMAL_ENTRIES} objects")
    for item in conformal:
        if not isinstance(item, dict):
            raise ValueError(f"{where}: a 'conformal' item must be a JSON object, got {type(item).__name__}")
        alpha, q = item.get("alpha"), item.get("q")
        if not is_finite_number(alpha) or not 0 < alpha < 1:
            raise ValueError(f"{where}: conformal 'alpha' must be a number in (0, 1), got {alpha!r}")
        if not is_finite_number(q) or not 0 <= q <= SCALE_RANGE[1]:
            raise ValueError(f"{where}: conformal 'q' must be a finite number in [0, {SCALE_RANGE[1]:g}], got {q!r}")
        if item.get("level", "pixel") not in CONFORMAL_LEVELS:
            raise ValueError(f"{where}: conformal 'level' must be one of {', '.join(CONFORMAL_LEVELS)}, got "
                             f"{str(item.get('level'))[:40]!r}")
        for name in ("pixels", "images"):
            count = item.get(name, 1)
            if not isinstance(count, int) or isinstance(count, bool) or count < 1:
                raise ValueError(f"{where}: conformal {name!r} must be a positive integer, got {str(count)[:40]}")
    if not isinstance(entry.get("params", {}) or {}, dict):
        raise ValueError(f"{where}: 'params' must be a JSON object")
    if not isinstance(entry.get("fitted_on", ""), str):
        raise ValueError(f"{where}: 'fitted_on' must be text")


def read_calibration(weight_set=None) -> dict[str, list[dict[str, Any]]]:
    """The stored calibration table of a weight set (empty when it has none), every entry checked: a table that is
    not a regular file, too large, too deep, or whose entries have fields of the wrong type or range is a
    ``ValueError`` naming the file and the field (never a NaN, zero or negative scale applied to a std map)."""
    from ..fileio import check_regular_file

    path = calibration_path(weight_set)
    if not os.path.lexists(path):
        return {}
    try:
        check_regular_file(path, "calibration table")
        if path.stat().st_size > MAX_CALIBRATION_BYTES:
            raise ValueError(f"{path.stat().st_size} bytes, more than the limit of {MAX_CALIBRATION_BYTES}")
        table = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        text = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise ValueError(f"{path}: not a readable calibration table ({text})") from None
    if not isinstance(table, dict):
        raise ValueError(f"{path}: expected a JSON object of method -> entries")
    count = 0
    for method, entries in table.items():
        if not isinstance(entries, list):
            raise ValueError(f"{path}: the entries of {method[:40]!r} must be a list, got {type(entries).__name__}")
        count += len(entries)
        if count > MAX_CALIBRATION_ENTRIES:
            raise ValueError(f"{path}: more than {MAX_CALIBRATION_ENTRIES} entries")
        for index, entry in enumerate(entries):
            _check_entry(entry, f"{path}: {method[:40]} entry {index}")
    return table


def stored_entry(method: str, mask: str, sigma: float, weight_set=None) -> dict[str, Any] | None:
    """The stored calibration entry of ``method`` for exactly this mask spec and sigma, or None."""
    for entry in read_calibration(weight_set).get(method, []):
        if entry.get("mask") == mask and math.isclose(float(entry.get("sigma", -1)), float(sigma), rel_tol=1e-9):
            return entry
    return None


def stored_scale(method: str, mask: str, sigma: float, weight_set=None) -> float | None:
    """The fitted std scale factor of ``method`` at ``mask``/``sigma`` in the weight set, or None."""
    entry = stored_entry(method, mask, sigma, weight_set)
    return None if entry is None else float(entry["scale"])


def stored_conformal(method: str, mask: str, sigma: float, alpha: float, level: str = "pixel",
                     weight_set=None) -> float | None:
    """The stored conformal quantile ``q`` (``x_hat +- q s`` with the raw std ``s``) of ``method`` at exactly
    ``mask``/``sigma`` for ``alpha`` and ``level``, or None."""
    entry = stored_entry(method, mask, sigma, weight_set)
    for item in (entry or {}).get("conformal", []):
        if math.isclose(float(item["alpha"]), float(alpha), rel_tol=1e-9) and item.get("level", "pixel") == level:
            return float(item["q"])
    return None


#: the image shape the stored factors were fitted at, for entries that do not record their sampling fraction (both
#: bundled sets: 128 x 128 phantoms and MRNet slices)
FITTED_SHAPE = IMAGE_SHAPE
#: a run's sampling fraction within this log distance of a stored entry's counts as the entry's own setting
EXACT_FRACTION_LOG = 0.01


@dataclass(frozen=True)
class StdScale:
    """The stored std scale factor that applies to one run (:func:`std_scale_for_run`)."""

    method: str
    scale: float  #: multiply the run's std map by this
    mask: str  #: the setting the factor was fitted at
    sigma: float
    fitted_on: str  #: e.g. ``"mrnet_val_c8.h5, 12 images"``
    fitted_for_k: tuple[float, ...]
    weight_set: str
    exact: bool  #: the run's own mask spec and sigma (else the nearest stored setting)
    #: parameters the factor was fitted with that differ from the run's: ``name -> (fitted, run)``
    differing_params: dict[str, tuple[Any, Any]]
    description: str  #: one line for a tooltip or a note
    #: the conformal quantiles stored with the factor: ``{"alpha", "q", "level"}`` each (``x_hat +- q`` raw std)
    conformal: tuple[dict[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "description": self.description, "mask": self.mask, "sigma": self.sigma,
                "fitted_on": self.fitted_on, "fitted_for_k": list(self.fitted_for_k), "weights": self.weight_set,
                "exact": self.exact, "differing_params": {k: list(v) for k, v in self.differing_params.items()},
                "conformal": [dict(item) for item in self.conformal]}


def _entry_fraction(entry: dict[str, Any]) -> float | None:
    """The sampling fraction of a stored entry: its ``sampling_fraction``, else its generated mask spec at
    :data:`FITTED_SHAPE` (None for a mask file without a recorded fraction, or a spec that cannot be rebuilt)."""
    if "sampling_fraction" in entry:
        return float(entry["sampling_fraction"])
    if str(entry["mask"]).partition(":")[0].lower() not in GENERATED_MASKS:
        return None  # a mask file is not opened for every stored entry (it may be gone, huge, or a FIFO)
    from ..physics import mask_from_spec

    try:
        return float(mask_from_spec(str(entry["mask"]), tuple(entry.get("shape", FITTED_SHAPE))).mean())
    except (ValueError, OSError, KeyError):
        return None


def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def std_scale_for_run(method: str, mask: str, sigma: float, fraction: float | None = None,
                      params: dict[str, Any] | None = None, weight_set=None) -> StdScale | None:
    """The stored std scale factor for a run of ``method`` at ``mask`` (spec) / ``fraction`` (its sampled fraction)
    / ``sigma`` with the weight set (default: the bundled default set), or None when the set stores none for the method.

    Like the tuned defaults (:func:`genreg_viewer.tuning.nearest_setting`) the entry nearest in
    ``(log sampling fraction, log sigma)`` is used (``fraction`` defaults to the run's mask spec at
    :data:`FITTED_SHAPE`; an entry's is its mask spec's at that shape); unless it is the run's own mask spec and
    sigma at the same sampled fraction (``exact``), the description says that it was fitted at another setting.
    Parameters that differ from the fit (``params``, e.g. another ``lam`` or fewer posterior samples) are named
    too. The factor is fitted for the ±k std intervals of ``fitted_for_k``."""
    from ..tuning import nearest_setting
    from ..weight_sets import default_weight_set

    weight_set = weight_set or default_weight_set()
    entries = read_calibration(weight_set).get(method, [])
    if not entries:
        return None
    if fraction is None:
        fraction = _entry_fraction({"mask": mask})
    located = [{**e, "sampling_fraction": f} for e in entries if (f := _entry_fraction(e)) is not None]
    entry = nearest_setting(located, fraction, sigma) if fraction is not None else None
    if entry is None:  # a run whose mask cannot be placed: only its own spec and sigma can match
        entry = stored_entry(method, mask, sigma, weight_set)
        if entry is None:
            return None
        entry = {**entry, "sampling_fraction": fraction}
    exact = entry["mask"] == mask and math.isclose(float(entry["sigma"]), float(sigma), rel_tol=1e-9) and (
        fraction is None or entry["sampling_fraction"] is None
        or abs(math.log(max(fraction, 1e-6) / max(entry["sampling_fraction"], 1e-6))) < EXACT_FRACTION_LOG)
    scale = float(entry["scale"])
    fitted_for_k = tuple(float(k) for k in entry.get("fitted_for_k", FIT_KS))
    fitted_params = entry.get("params", {}) or {}
    differing = {name: (value, params[name]) for name, value in fitted_params.items()
                 if params is not None and name in params and not _same_value(value, params[name])}
    ks = ", ".join(f"{k:g}" for k in fitted_for_k)
    text = (f"x{scale:.3g}, fitted on {entry.get('fitted_on', 'validation images')} ({weight_set.name} set) at "
            f"{entry['mask']}, sigma {float(entry['sigma']):g} for the ±{ks} std interval"
            f"{'s' if len(fitted_for_k) > 1 else ''}")
    if not exact:
        sampled = f" ({100 * fraction:.1f} % sampled)" if fraction is not None else ""
        text += f"; the nearest stored setting to this run's {mask}{sampled}, sigma {float(sigma):g}"
    if differing:
        text += "; fitted with " + ", ".join(f"{k}={v[0]}" for k, v in differing.items()) + " (this run: " + \
            ", ".join(f"{k}={v[1]}" for k, v in differing.items()) + ")"
    conformal = tuple({"alpha": float(item["alpha"]), "q": float(item["q"]), "level": item.get("level", "pixel")}
                      for item in entry.get("conformal", []))
    return StdScale(method, scale, str(entry["mask"]), float(entry["sigma"]), str(entry.get("fitted_on", "")),
                    fitted_for_k, weight_set.name, exact, differing, text, conformal)


def write_calibration(entries: dict[str, dict[str, Any]], weight_set=None) -> Path:
    """Merge ``{method: entry}`` (each entry with ``mask``, ``sigma``, ``scale`` and what it was fitted on, optionally
    ``conformal``: a list of ``{"alpha", "q", "level", "pixels", "images"}``) into the weight set's
    ``tuned/calibration.json`` (an entry of the same method, mask and sigma is replaced, with everything fitted with
    it). Each entry is checked as :func:`read_calibration` checks the file before anything is written."""
    from ..fileio import atomic_write_text

    for method, entry in entries.items():
        _check_entry(entry, f"new calibration entry of {method[:40]}")
    table = read_calibration(weight_set)
    for method, entry in entries.items():
        kept = [e for e in table.get(method, []) if not (e.get("mask") == entry["mask"] and math.isclose(
            float(e.get("sigma", -1)), float(entry["sigma"]), rel_tol=1e-9))]
        table[method] = sorted(kept + [entry], key=lambda e: (str(e["mask"]), float(e["sigma"])))
    path = calibration_path(weight_set)
    atomic_write_text(path, json.dumps(table, indent=2) + "\n")
    return path


# ------------------------------------------------------------------------------------------------------------ plot
def plot_calibration(panels: Sequence[tuple[str, dict[str, Any]]], path) -> Path:
    """Write a calibration plot (PNG): one panel per ``(title, report)`` (a ``genreg calibrate --report`` object),
    the empirical coverage ``C(k)`` of each method's raw (solid) and scaled (dashed) std map against the Gaussian
    coverage ``erf(k / sqrt 2)`` over k = 0 .. 4, with k = 1, 2, 3 marked; the diagonal is a calibrated map."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    from ..fileio import atomic_path

    figure = Figure(figsize=(4.2 * len(panels), 4.2), dpi=110)
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    colours = {"mean+covar": "tab:red", "mean+diagonal": "tab:blue", "latent-vi": "tab:green"}
    for ax, (title, report) in zip(axes, panels):
        ax.plot([0, 1], [0, 1], color="0.6", linewidth=1, label="calibrated")
        for name, entry in report["methods"].items():
            colour = colours.get(name)
            for label, style in (("raw", "-"), ("scaled", "--")):
                if label not in entry:
                    continue
                curve = entry[label]
                nominal = [gaussian_coverage(k) for k in curve["curve_k"]]
                text = name if label == "raw" else f"{name} x {curve['scale']:.3g}"
                line, = ax.plot(nominal, curve["curve_coverage"], style, color=colour, linewidth=1.5, label=text)
                ax.plot([gaussian_coverage(float(k)) for k in curve["coverage"]], list(curve["coverage"].values()),
                        "o", color=line.get_color(), markersize=3.5)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_aspect("equal")
        ax.set_xlabel("Gaussian coverage P(|Z| <= k)")
        ax.set_ylabel("empirical coverage of |x - x_hat| <= k std")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, format="png")
    return Path(path)
