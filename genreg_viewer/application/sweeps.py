"""PSNR sweeps for the sweep view (no Qt): reconstruct a set of images for each value of the number of radial
spokes or of the noise level, with each chosen method, as in the paper's figures 3 (PSNR against spokes) and
7-9 (PSNR against noise).

Every setting simulates ``y = M F x + n`` for the whole batch of images at once (one seeded noise draw per setting)
and runs each method on the batch with its default, setting-dependent parameters
(:meth:`~genreg_viewer.recon.ReconMethod.defaults_for`). PSNR/SSIM are computed per image on the result clipped to
[0, 1] (data range 1).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import torch

from .. import metrics
from ..physics import MAX_SPOKES, radial_mask, simulate_measurement
from ..recon import NonFiniteResultError, Problem, check_finite_result, run_method

SWEEP_AXES = {"spokes": "Radial spokes", "noise": "Noise σ"}
__all__ = ["MAX_SPOKES", "MAX_SWEEP_VALUES", "SWEEP_AXES", "SweepPoint", "SweepSpec", "parse_values", "run_sweep",
           "summarise", "to_csv"]
#: most values a start:stop:step range may expand to
MAX_SWEEP_VALUES = 1000


@dataclass
class SweepSpec:
    """What to sweep: ``axis`` (``spokes`` or ``noise``), its ``values``, the methods and the images."""

    axis: str
    values: list[float]
    methods: list[str]
    images: np.ndarray  #: (N, H, W) in [0, 1]
    spokes: int = 25  #: fixed number of spokes when sweeping the noise
    sigma: float = 0.05  #: fixed noise level when sweeping the spokes
    seed: int = 0
    device: str = "cpu"
    iterations: dict[str, int] = field(default_factory=dict)  #: per-method override; default iterations otherwise
    #: the :class:`~genreg_viewer.weight_sets.WeightSet` of the runs (the app passes its picker's; None: the bundled
    #: default set)
    weight_set: Any = None

    def validate(self) -> None:
        if self.axis not in SWEEP_AXES:
            raise ValueError(f"unknown sweep axis {self.axis!r}; use one of {', '.join(SWEEP_AXES)}")
        if not self.values:
            raise ValueError("the sweep needs at least one value")
        if not all(math.isfinite(v) for v in self.values):
            raise ValueError("sweep values must be finite numbers")
        if not self.methods:
            raise ValueError("choose at least one method for the sweep")
        if self.images.ndim != 3 or len(self.images) == 0:
            raise ValueError("the sweep needs at least one image")
        if self.axis == "spokes" and any(v < 1 or v != int(v) for v in self.values):
            raise ValueError("spoke counts must be whole numbers of at least 1")
        if self.axis == "spokes" and max(self.values) > MAX_SPOKES:
            raise ValueError(f"spoke counts must be at most {MAX_SPOKES}, got {max(self.values):g}")
        if self.axis == "noise" and any(v < 0 for v in self.values):
            raise ValueError("noise levels must not be negative")

    @property
    def total_runs(self) -> int:
        return len(self.values) * len(self.methods)

    def setting(self, value: float) -> tuple[int, float]:
        """``(spokes, sigma)`` for one value of the swept axis."""
        return (int(value), self.sigma) if self.axis == "spokes" else (self.spokes, float(value))


@dataclass
class SweepPoint:
    """One finished point of a sweep: the method, the swept value and the scores of its run. A run that diverged
    (NaN or infinite image) has ``error`` set (the one-line reason) and NaN scores; it is never plotted, averaged or
    exported as a score."""

    method: str
    value: float
    psnr: np.ndarray  #: per image
    ssim: np.ndarray
    seconds: float
    error: str = ""

    @property
    def failed(self) -> bool:
        return bool(self.error)


def parse_values(text: str, axis: str) -> list[float]:
    """Values from ``"5, 15, 25"`` or a range ``"5:45:10"`` (start:stop:step, stop included)."""
    text = text.strip()
    if not text:
        raise ValueError("enter the values to sweep, e.g. 5, 15, 25 or 5:45:10")
    try:
        if ":" in text:
            parts = [float(p) for p in text.split(":")]
            if len(parts) != 3 or parts[2] <= 0 or parts[1] < parts[0]:
                raise ValueError
        else:
            parts = [float(p) for p in text.replace(";", ",").split(",") if p.strip()]
    except ValueError:
        raise ValueError(f"cannot read sweep values {text!r}; write e.g. 5, 15, 25 or 5:45:10") from None
    if not all(math.isfinite(v) for v in parts):
        raise ValueError(f"sweep values must be finite numbers, got {text!r}")
    if ":" in text:
        start, stop, step = parts
        if (stop - start) / step >= MAX_SWEEP_VALUES:
            raise ValueError(f"{text!r} gives more than {MAX_SWEEP_VALUES} values; use a larger step")
        values = list(np.arange(start, stop + step * 1e-6, step))
    else:
        values = parts
    if axis == "spokes":
        values = [float(int(round(v))) for v in values]
    return sorted(set(values))


def run_sweep(spec: SweepSpec, cancel: threading.Event | None = None) -> Iterator[SweepPoint]:
    """Yield one :class:`SweepPoint` per (value, method); stops early when ``cancel`` is set."""
    spec.validate()
    truth = torch.from_numpy(np.ascontiguousarray(spec.images, dtype=np.float32))[:, None]
    shape = (int(truth.shape[-2]), int(truth.shape[-1]))
    for offset, value in enumerate(spec.values):
        spokes, sigma = spec.setting(value)
        measurement = simulate_measurement(truth, radial_mask(spokes, shape), sigma, spec.seed + offset)
        for method in spec.methods:
            if cancel is not None and cancel.is_set():
                return
            problem = Problem(measurement, truth, seed=spec.seed, device=torch.device(spec.device),
                              weight_set=spec.weight_set)
            result = run_method(method, problem, iterations=spec.iterations.get(method), cancel=cancel)
            if result.cancelled:
                return
            try:
                check_finite_result(result)
            except NonFiniteResultError as exc:
                nan = np.full(len(truth), np.nan)
                yield SweepPoint(method, float(value), nan, nan.copy(), result.seconds, error=str(exc))
                continue
            clipped = result.image.clamp(0, 1)
            yield SweepPoint(
                method, float(value), metrics.psnr(clipped, truth).numpy(), metrics.ssim(clipped, truth).numpy(),
                result.seconds,
            )


def summarise(points: list[SweepPoint]) -> dict[str, dict[str, np.ndarray]]:
    """Per method: sorted ``x``, mean and std of PSNR and mean SSIM over the images (failed points left out)."""
    table: dict[str, dict[str, np.ndarray]] = {}
    scored = [p for p in points if not p.failed]
    for method in dict.fromkeys(p.method for p in scored):
        rows = sorted((p for p in scored if p.method == method), key=lambda p: p.value)
        table[method] = {
            "x": np.array([p.value for p in rows]),
            "psnr": np.array([p.psnr.mean() for p in rows]),
            "psnr_std": np.array([p.psnr.std() for p in rows]),
            "ssim": np.array([p.ssim.mean() for p in rows]),
        }
    return table


def to_csv(points: list[SweepPoint], axis: str) -> str:
    """One line per (method, value, image): ``method,<axis>,image,psnr,ssim``; failed points are left out."""
    lines = [f"method,{axis},image,psnr,ssim"]
    for p in points:
        if p.failed:
            continue
        for index, (psnr, ssim) in enumerate(zip(p.psnr, p.ssim)):
            lines.append(f"{p.method},{p.value:g},{index},{psnr:.4f},{ssim:.5f}")
    return "\n".join(lines) + "\n"
