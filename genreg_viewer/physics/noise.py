"""Measurement simulation ``y = M F x + n`` with complex Gaussian noise.

``n`` has i.i.d. ``N(0, sigma^2)`` real and imaginary parts on every *sampled* coefficient (zero elsewhere).
Noise is drawn on the CPU from a seeded generator, so a seed gives the same measurement on every device.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .operator import MRIOperator

#: largest noise sigma accepted: images are in [0, 1] and the FFT is orthonormal, so a k-space coefficient is at
#: most ``sqrt(H W)`` (128 for 128 x 128) and typically far below 1; sigma = 10 already buries every one of them
MAX_SIGMA = 10.0


def check_sigma(sigma, what: str = "noise sigma") -> float:
    """``sigma`` as a float in ``[0, MAX_SIGMA]``; anything else (NaN, infinite, negative, huge, not a number) is a
    ``ValueError`` naming ``what``."""
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float, np.number)) or not np.isfinite(sigma) \
            or not 0 <= sigma <= MAX_SIGMA:
        raise ValueError(f"{what} must be a number between 0 and {MAX_SIGMA:g} (the std of the k-space noise of an "
                         f"image in [0, 1]), got {sigma!r}")
    return float(sigma)


@dataclass
class Measurement:
    """Simulated or measured k-space data with what is needed to reconstruct from it."""

    y: torch.Tensor  #: complex ``(B, 1, H, W)``, DC at index 0, zero off the mask
    operator: MRIOperator
    sigma: float
    seed: int | None = None

    @property
    def mask(self) -> np.ndarray:
        return self.operator.mask

    def to(self, device: torch.device | str) -> "Measurement":
        return Measurement(self.y.to(device), self.operator.to(device), self.sigma, self.seed)

    def zero_filled(self) -> torch.Tensor:
        """Real part of the adjoint reconstruction ``Re(A^H y)``."""
        return self.operator.adjoint_real(self.y)


def add_kspace_noise(k: torch.Tensor, sampling: torch.Tensor, sigma: float, seed: int | None = 0) -> torch.Tensor:
    """Return ``k + sampling * (n_re + i n_im)`` with ``n_re, n_im ~ N(0, sigma^2)`` drawn from ``seed``."""
    sigma = check_sigma(sigma)
    if sigma == 0:
        return k * sampling
    generator = torch.Generator().manual_seed(int(seed) if seed is not None else torch.seed())
    real_dtype = torch.float64 if k.dtype == torch.complex128 else torch.float32
    noise = torch.randn((2, *k.shape), generator=generator, dtype=real_dtype).to(k.device)
    return (k + sigma * torch.complex(noise[0], noise[1])) * sampling


def simulate_measurement(
    image: torch.Tensor | np.ndarray,
    mask,
    sigma: float,
    seed: int | None = 0,
    device: torch.device | str | None = None,
) -> Measurement:
    """Simulate ``y = M F x + n`` for a real image ``(H, W)``, ``(1, H, W)`` or ``(B, 1, H, W)``."""
    x = torch.as_tensor(np.asarray(image, dtype=np.float32) if isinstance(image, np.ndarray) else image)
    x = x.to(torch.float32)
    while x.ndim < 4:
        x = x.unsqueeze(0)
    if device is not None:
        x = x.to(device)
    if not torch.isfinite(x).all():
        raise ValueError("the image contains NaN or infinite values")
    operator = MRIOperator(mask, device=x.device)
    y = add_kspace_noise(operator.fft(x), operator.sampling, sigma, seed)
    return Measurement(y=y, operator=operator, sigma=float(sigma), seed=seed)
