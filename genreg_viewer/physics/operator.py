"""The undersampled Fourier operator A = M F.

Conventions (see ``../shared/notes/method-facts.md`` and README):

* ``F`` is the orthonormal 2-D DFT (``torch.fft.fft2(..., norm="ortho")``) with the DC coefficient at index
  ``[0, 0]`` internally; masks are stored *centred* (DC in the middle, as displayed) and ``ifftshift``-ed once.
* Measurements are full-size complex arrays that are zero outside the mask, so ``A^H = F^H M`` and
  ``A^H A = F^H M F`` is an orthogonal projection in image space (``M`` is 0/1 diagonal).
* Everything is batched over leading dimensions: images are ``(B, 1, H, W)`` (real or complex), on any device.
"""

from __future__ import annotations

import numpy as np
import torch

from .masks import MaskError, as_mask_array


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

    # ------------------------------------------------------------------ basics
    def to(self, device: torch.device | str) -> "MRIOperator":
        """The same operator on another device."""
        return MRIOperator(self.mask, device=device)

    @property
    def sampling_fraction(self) -> float:
        """Fraction of k-space coefficients sampled."""
        return float(self.mask.mean())

    @property
    def norm(self) -> float:
        """Operator norm ``||A||_2`` (1: a coordinate projection of a unitary map)."""
        return 1.0

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
        """``Re(A^H A x)`` for real ``x``: the Gram operator of ``A`` seen as a map from real images."""
        return self.normal(x).real

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
