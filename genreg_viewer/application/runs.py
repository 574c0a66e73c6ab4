"""Finished reconstructions as the application keeps them (:class:`RunRecord`: numpy arrays on the CPU, the
measurement setting they ran with), built from a :class:`~genreg_viewer.recon.ReconResult` by the app's worker and by
``genreg recon --out``; both save them in the same bundle format (:mod:`genreg_viewer.application.bundles`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..recon import ReconResult

if TYPE_CHECKING:
    from .covariance import PreparedCovariance

#: most posterior samples a run keeps (``arrays['samples']``, ``(K, H, W)``; the first K the method drew): enough for
#: the app's flip-book, small in sessions (8 x 128 x 128 float32 is 512 KiB)
KEPT_SAMPLES = 8


@dataclass
class RunRecord:
    """A finished (or cancelled) reconstruction as the GUI keeps it: numpy arrays on the CPU."""

    run_id: int
    method: str
    title: str
    image: np.ndarray  #: (H, W) float32
    params: dict[str, Any]
    iterations: int
    seconds: float
    device: str
    psnr: float | None
    ssim: float | None
    cancelled: bool = False
    setting: dict[str, Any] = field(default_factory=dict)  #: mask spec, sigma, seed, sampled fraction
    #: array extras, e.g. ``std_map`` (H, W), ``latent`` (D,), ``samples`` (K, H, W): at most :data:`KEPT_SAMPLES`
    #: posterior samples
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)  #: scalar extras
    history: list[dict[str, Any]] = field(default_factory=list)
    #: the covariance inspector's decoding of this run (``L(z)``, mean, variance map), made on the worker when the
    #: run ended (:func:`genreg_viewer.application.covariance.prepare_for_run`); not saved with sessions
    covariance: "PreparedCovariance | None" = field(default=None, repr=False, compare=False)

    @classmethod
    def from_result(cls, result: ReconResult, run_id: int, title: str, setting: dict[str, Any]) -> "RunRecord":
        arrays: dict[str, np.ndarray] = {}
        info: dict[str, Any] = {}
        for key, value in result.extras.items():  # the reported entries, typed (RunExtras): arrays and scalars
            if isinstance(value, torch.Tensor):
                value = value.detach().cpu().numpy()
            if isinstance(value, np.ndarray):
                arrays[key] = _samples(value) if key == "samples" else _first_item(value)
            elif isinstance(value, (int, float, str, bool)) or value is None:
                info[key] = value
        return cls(
            run_id=run_id,
            method=result.method,
            title=title,
            image=result.image_numpy().astype(np.float32),
            params=dict(result.params),
            iterations=result.iterations,
            seconds=float(result.seconds),
            device=result.device,
            psnr=result.psnr,
            ssim=result.ssim,
            cancelled=bool(result.cancelled),
            setting=dict(setting),
            arrays=arrays,
            info=info,
            history=list(result.history),
        )

    def repeat_key(self) -> tuple:
        """What makes two runs the same run (a *repeat*): method, parameters, iterations, whether it was
        cancelled, the measurement setting and the weights. Repeats are numbered in the comparison ("TV #2") or,
        when the user asks, replace the earlier run (:attr:`ExperimentState.replace_repeats`)."""
        return (self.method, repr(sorted(self.params.items())), self.iterations, self.cancelled,
                repr(sorted(self.setting.items())), repr(self.info.get("weights")))

    def label(self) -> str:
        suffix = " (cancelled)" if self.cancelled else ""
        return f"{self.title}{suffix}"

    def metrics_text(self) -> str:
        if self.psnr is None:
            return ""
        return f"PSNR {self.psnr:.2f} dB · SSIM {self.ssim:.3f}"

    def setting_text(self) -> str:
        return describe_setting(self.setting)


def _first_item(array: np.ndarray) -> np.ndarray:
    """Drop a leading batch/channel of size one: ``(1, 1, H, W)`` -> ``(H, W)``, ``(1, D)`` -> ``(D,)``."""
    array = np.asarray(array)
    while array.ndim > 2 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 2 and array.shape[0] == 1:
        array = array[0]
    return array.astype(np.float32) if array.dtype.kind == "f" else array


def _samples(array: np.ndarray) -> np.ndarray:
    """Posterior samples ``(K, B, 1, H, W)`` (or ``(K, 1, H, W)``) as ``(K, H, W)`` float32: the first
    :data:`KEPT_SAMPLES` of them, of the first image (a run record holds one)."""
    array = np.asarray(array)
    while array.ndim > 3:
        array = array[:, 0]
    return np.ascontiguousarray(array[:KEPT_SAMPLES], dtype=np.float32)


def describe_setting(setting: dict[str, Any]) -> str:
    """``radial:25 · 10.2% · σ=0.05`` from a setting dict."""
    parts = [str(setting.get("mask", ""))]
    if "fraction" in setting:
        parts.append(f"{100 * setting['fraction']:.1f}%")
    if "sigma" in setting:
        parts.append(f"σ={setting['sigma']:g}")
    return " · ".join(p for p in parts if p)
