"""The undersampled Fourier operator A = M F.

Conventions (see ``../shared/notes/method-facts.md`` and README):

* ``F`` is the orthonormal 2-D DFT (``torch.fft.fft2(..., norm="ortho")``) with the DC coefficient at index
  ``[0, 0]`` internally; masks are stored *centred* (DC in the middle, as displayed) and ``ifftshift``-ed once.
* Measurements are full-size complex arrays that are zero outside the mask, so ``A^H = F^H M`` and
  ``A^H A = F^H M F`` is an orthogonal projection in image space (``M`` is 0/1 diagonal).
* Everything is batched over leading dimensions: images are ``(B, 1, H, W)`` (real or complex), on any device.
* Reconstructions look for *real* images. Seen as a map from real images, ``A`` has the Gram operator
  ``Re(A^H A) = F^H D F`` with the conjugate-symmetrised sampling ``D(k) = (M(k) + M(-k)) / 2`` (values 0, 1/2, 1),
  because ``conj(F^H M F x) = F^H M(-.) F x`` for real ``x``. It is diagonal in k-space, so the data term's
  proximal map is exact (:meth:`MRIOperator.prox_l2`, :class:`RealLeastSquares`). It is *not* the projection
  ``A^H A``: a coefficient whose mirror ``-k`` is unsampled has ``D = 1/2``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .masks import MaskError, as_mask_array


def _mirror(k: torch.Tensor) -> torch.Tensor:
    """``k(-f)`` for an un-centred spectrum ``k(f)`` (index 0 maps to itself): flip, then roll by one."""
    return torch.roll(torch.flip(k, dims=(-2, -1)), shifts=(1, 1), dims=(-2, -1))


def conjugate_symmetric_sampling(sampling: torch.Tensor) -> torch.Tensor:
    """``D(k) = (M(k) + M(-k)) / 2`` for an un-centred sampling pattern ``M`` (DC at index 0, ``-k`` modulo the
    size): the k-space diagonal of ``Re(A^H A)`` on real images (entries 0, 1/2 where only one of ``k``, ``-k`` is
    sampled, and 1)."""
    return 0.5 * (sampling + _mirror(sampling))


def _ensure_complex(x: torch.Tensor) -> torch.Tensor:
    return x if x.is_complex() else x.to(torch.complex64 if x.dtype != torch.float64 else torch.complex128)


class MRIOperator:
    """``A x = M F x`` for a binary sampling mask ``M`` (centred ``H x W`` boolean array).

    ``forward`` maps images ``(..., H, W)`` to k-space with DC at index 0 (zero off the mask), ``adjoint`` is
    its exact adjoint ``F^H M``. Since ``F`` is unitary, ``||A|| = 1`` for any non-empty mask.
    """

    def __init__(self, mask, device: torch.device | str | None = None):
        mask_np = as_mask_array(mask)
        if not mask_np.any():
            raise MaskError("the sampling mask is empty: it samples no k-space coefficient")
        self.mask = mask_np
        self.shape = mask_np.shape
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.sampling = torch.from_numpy(np.fft.ifftshift(mask_np).astype(np.float32)).to(self.device)
        self._real_gram_weights: torch.Tensor | None = None

    # ------------------------------------------------------------------ basics
    def to(self, device: torch.device | str) -> "MRIOperator":
        """The same operator on another device."""
        return MRIOperator(self.mask, device=device)

    @property
    def sampling_fraction(self) -> float:
        """Fraction of k-space coefficients sampled."""
        return float(self.mask.mean())

    @property
    def real_gram_weights(self) -> torch.Tensor:
        """``D = (M(k) + M(-k)) / 2`` (DC at index 0, on the operator's device): ``Re(A^H A) = F^H D F``."""
        if self._real_gram_weights is None:
            self._real_gram_weights = conjugate_symmetric_sampling(self.sampling)
        return self._real_gram_weights

    def _check(self, x: torch.Tensor) -> None:
        if tuple(x.shape[-2:]) != self.shape:
            raise ValueError(f"image of size {tuple(x.shape[-2:])} does not match mask of size {self.shape}")

    # --------------------------------------------------------------- operator
    def fft(self, x: torch.Tensor) -> torch.Tensor:
        """Fully sampled orthonormal k-space ``F x`` (DC at index 0)."""
        self._check(x)
        return torch.fft.fft2(_ensure_complex(x), norm="ortho")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``A x = M F x``."""
        return self.fft(x) * self.sampling.to(x.device)

    __call__ = forward

    def adjoint(self, k: torch.Tensor) -> torch.Tensor:
        """``A^H k = F^H M k`` (complex image)."""
        self._check(k)
        return torch.fft.ifft2(k * self.sampling.to(k.device), norm="ortho")

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        """``A^H A x = F^H M F x`` (complex image)."""
        return torch.fft.ifft2(self.fft(x) * self.sampling.to(x.device), norm="ortho")

    def normal_real(self, x: torch.Tensor) -> torch.Tensor:
        """``Re(A^H A x) = F^H D F x`` for real ``x``: the Gram operator of ``A`` seen as a map from real images
        (self-adjoint, eigenvalues in {0, 1/2, 1}); one real FFT pair. Complex ``x``: ``Re(A^H A x)`` directly."""
        if x.is_complex():
            return self.normal(x).real
        self._check(x)
        return torch.fft.irfft2(torch.fft.rfft2(x, norm="ortho") * self._half(x.device), s=self.shape, norm="ortho")

    def prox_l2(self, v: torch.Tensor, y: torch.Tensor, rho: float) -> torch.Tensor:
        """``argmin_{x real} 1/2 ||A x - y||^2 + rho/2 ||x - v||^2 = F^H [F(Re(A^H y) + rho v) / (D + rho)]``.

        Exact (the normal equation ``(Re(A^H A) + rho I) x = Re(A^H y) + rho v`` is diagonal in k-space), real,
        one FFT pair; ``rho > 0``. For repeated calls with the same ``y`` use :meth:`data_term`. Taking the real
        part of the complex solution ``F^H [(y + rho F v) / (M + rho)]`` instead would not solve the problem over
        real images when the mask is not point-symmetric (e.g. an odd number of radial spokes).
        """
        return RealLeastSquares(self, y).prox_l2(v, rho)

    def data_term(self, y: torch.Tensor) -> "RealLeastSquares":
        """The data term ``f(x) = 1/2 ||A x - y||^2`` over real images, with its gradient and proximal map."""
        return RealLeastSquares(self, y)

    def _half(self, device: torch.device) -> torch.Tensor:
        """``D`` on the half spectrum of ``rfft2`` (``D`` is even, so the half determines it)."""
        return self.real_gram_weights.to(device)[..., : self.shape[1] // 2 + 1]

    def adjoint_real(self, k: torch.Tensor) -> torch.Tensor:
        """``Re(A^H k)``: the adjoint of ``A`` restricted to real images (the zero-filled reconstruction)."""
        return self.adjoint(k).real

    def data_misfit(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``||A x - y||^2`` per batch item (sum over all but the first dimension)."""
        r = self.forward(x) - y
        return (r.real.square() + r.imag.square()).flatten(1).sum(1)

    @staticmethod
    def centred(k: torch.Tensor) -> torch.Tensor:
        """Shift k-space so DC is in the middle (for display)."""
        return torch.fft.fftshift(k, dim=(-2, -1))


class RealLeastSquares:
    """The data term ``f(x) = 1/2 ||A x - y||^2`` of a real image ``x``, diagonalised by the real FFT.

    With ``b = Re(A^H y)`` and ``D`` the conjugate-symmetrised sampling (:func:`conjugate_symmetric_sampling`)::

        f(x)              = 1/2 <x, F^H D F x> - <x, b> + 1/2 ||y||^2
        grad f(x)         = F^H D F x - b                      (Lipschitz constant max D = 1)
        prox_l2(v, rho)   = argmin_x f(x) + rho/2 ||x - v||^2 = F^H [(rho F v + F b) / (D + rho)]
        prox_{tau f}(v)   = prox_l2(v, 1 / tau) = F^H [(F v + tau F b) / (1 + tau D)]

    ``D`` is even, so everything stays real and only the half spectrum (``rfft2``) is needed.
    """

    def __init__(self, operator: MRIOperator, y: torch.Tensor):
        operator._check(y)
        self.operator = operator
        self.shape = operator.shape
        sampling = operator.sampling.to(y.device)
        width = self.shape[1] // 2 + 1
        y = y * sampling
        real_dtype = torch.float64 if y.dtype in (torch.complex128, torch.float64) else torch.float32
        self.half_weights = operator._half(y.device).to(real_dtype)  # D on the rfft2 half spectrum, y's precision
        self.rhs = operator.adjoint_real(y)  # b = Re(A^H y)
        self.rhs_hat = torch.fft.rfft2(self.rhs, norm="ortho")
        # The misfit sum_k M(k) |x^(k) - y(k)|^2 over the full spectrum, written on the half spectrum: a column j
        # with 0 < j < W/2 stands for k and its mirror -k, where x^(-k) = conj(x^(k)); columns 0 and W/2 already
        # contain their own mirrors.
        self._sampled = sampling[..., :width, None]  # trailing axis: real and imaginary parts (view_as_real)
        self._y = y[..., :width]
        mirrored_sampling = _mirror(sampling)[..., :width].clone()
        mirrored_sampling[..., 0] = 0.0
        if self.shape[1] % 2 == 0:
            mirrored_sampling[..., -1] = 0.0
        self._mirror_sampled = mirrored_sampling[..., None]
        self._mirror_y = _mirror(y)[..., :width].conj()

    def _rfft(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fft.rfft2(x, norm="ortho")

    def _irfft(self, k: torch.Tensor) -> torch.Tensor:
        return torch.fft.irfft2(k, s=self.shape, norm="ortho")

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        """``Re(A^H A x) = F^H D F x``."""
        return self._irfft(self._rfft(x) * self.half_weights)

    def gradient(self, x: torch.Tensor) -> torch.Tensor:
        """``grad f(x) = Re(A^H (A x - y))``."""
        return self.normal(x) - self.rhs

    def value(self, x: torch.Tensor, x_hat: torch.Tensor | None = None) -> torch.Tensor:
        """``f(x) = 1/2 ||A x - y||^2`` per batch item (``x_hat``: ``x``'s half spectrum, if already known).

        Summed as residuals (not as ``<x, Gx> - 2<x, b> + ||y||^2``, which cancels catastrophically in float32).
        """
        if x_hat is None:
            x_hat = self._rfft(x)
        direct = torch.view_as_real(x_hat - self._y).square_().mul_(self._sampled)
        mirrored = torch.view_as_real(x_hat - self._mirror_y).square_().mul_(self._mirror_sampled)
        return 0.5 * direct.add_(mirrored).flatten(1).sum(1)

    def prox_l2(self, v: torch.Tensor, rho: float) -> torch.Tensor:
        """``argmin_{x real} f(x) + rho/2 ||x - v||^2 = F^H [(rho F v + F b) / (D + rho)]`` (``rho > 0``)."""
        rho = _positive_weight(rho)
        denominator = self.half_weights.to(v.dtype) + rho  # in v's precision (rho is not exact in float32)
        return self._irfft((rho * self._rfft(v) + self.rhs_hat) / denominator)

    def prox(self, tau: float) -> Callable[[torch.Tensor], torch.Tensor]:
        """The map ``v -> prox_{tau f}(v) = prox_l2(v, 1/tau)`` with its constants precomputed (one FFT pair)."""
        tau = _positive_weight(tau)
        offset = tau * self.rhs_hat
        gain = 1.0 / (1.0 + tau * self.half_weights)
        return lambda v: self._irfft((self._rfft(v) + offset) * gain)


def _positive_weight(weight: float) -> float:
    value = float(weight)
    if not 0 < value < float("inf"):
        raise ValueError(f"the proximal weight must be a positive finite number, got {weight!r}")
    return value
