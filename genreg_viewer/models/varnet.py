"""Variational network (Hammernik, Klatzer, Kobler, Recht, Sodickson, Pock, Knoll 2018, "Learning a variational
network for reconstruction of accelerated MRI data", MRM 79(6)).

Each stage ``t`` is one gradient step on a learned variational energy (paper eq. 4-5, here for real images)::

    x_{t+1} = x_t - sum_i K_{t,i}^T phi_{t,i}(K_{t,i} x_t) - lambda_t Re(A^H (A x_t - y))

with ``N_k = 24`` convolution kernels ``K_{t,i}`` of ``11 x 11`` (zero mean), activation functions ``phi_{t,i}``
that are weighted sums of ``31`` Gaussian radial basis functions on a fixed grid (paper eq. 6), and a learned data
weight ``lambda_t``; every stage has its own parameters. The iteration starts at the zero-filled adjoint
``x_0 = Re(A^H y)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class _InterpolatedRBF(torch.autograd.Function):
    """Piecewise-linear interpolation of per-channel tables ``T_c`` on uniform knots ``lo + k h``.

    ``forward(z, weights, basis, lo, h)`` with ``T = weights @ basis^T`` (``(C, n)``); the backward pass returns the
    exact gradient of the interpolant with respect to ``z`` and (through ``T``) to ``weights``. Inputs outside the
    table take the end values (the RBF mixture is negligible there) with zero derivative.
    """

    @staticmethod
    def forward(ctx, z, weights, basis, lo, h):
        table = weights @ basis.T  # (C, n)
        index, frac = _locate(z, table.shape[1], lo, h)
        flat = table.flatten()
        out = flat[index] * (1 - frac) + flat[index + 1] * frac
        ctx.save_for_backward(z, weights, basis)
        ctx.lo, ctx.h = lo, h
        return out

    @staticmethod
    def backward(ctx, grad_out):
        z, weights, basis = ctx.saved_tensors
        table = weights @ basis.T
        index, frac = _locate(z, table.shape[1], ctx.lo, ctx.h)
        grad_z = grad_w = None
        if ctx.needs_input_grad[0]:
            flat = table.flatten()
            inside = (z > ctx.lo) & (z < ctx.lo + (table.shape[1] - 1) * ctx.h)
            grad_z = grad_out * (flat[index + 1] - flat[index]) / ctx.h * inside
        if ctx.needs_input_grad[1]:
            grad_table = torch.zeros(table.numel(), dtype=grad_out.dtype, device=grad_out.device)
            grad_table.index_add_(0, index.flatten(), (grad_out * (1 - frac)).flatten())
            grad_table.index_add_(0, (index + 1).flatten(), (grad_out * frac).flatten())
            grad_w = grad_table.view_as(table) @ basis
        return grad_z, grad_w, None, None, None


def _locate(z: torch.Tensor, knots: int, lo: float, h: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat table index ``c * knots + k`` of the knot left of each ``z`` (channel ``c`` = dim 1) and the
    fractional position in ``[0, 1]`` inside that interval."""
    position = ((z - lo) / h).clamp(0, knots - 1)
    # a NaN input gets a valid index (NaN as an integer would index out of the table) and a NaN fraction, so the
    # output is NaN as well and training stops with a clear error instead of an IndexError
    left = position.nan_to_num(0.0).floor().clamp(max=knots - 2)
    channel_offset = torch.arange(z.shape[1], device=z.device).view(1, -1, 1, 1) * knots
    return left.long() + channel_offset, position - left


class RBFActivation(nn.Module):
    """Per-channel activation ``phi_c(z) = sum_j w_{c,j} exp(-(z - mu_j)^2 / (2 gamma^2))`` (Hammernik et al.
    2018, eq. 6): ``count`` Gaussians centred on a fixed uniform grid over ``[-extent, extent]``, width ``gamma`` =
    grid spacing, learned weights ``w``.

    For speed on the CPU the mixture is evaluated by linear interpolation of its values on a fine knot grid
    (spacing ``gamma / oversampling``, extending ``6 gamma`` past the outer centres); the interpolation error is at
    most ``h^2 / 8 * max|phi''| <= sum_j |w_j| / (8 oversampling^2)``, about ``3e-5 sum|w|`` for the default 64
    (:meth:`exact` evaluates the plain sum, for tests).
    """

    def __init__(self, channels: int, count: int = 31, extent: float = 1.0, oversampling: int = 64):
        super().__init__()
        self.register_buffer("centres", torch.linspace(-extent, extent, count))
        self.gamma = 2 * extent / (count - 1)
        self.lo = -extent - 6 * self.gamma
        self.h = self.gamma / oversampling
        knots = int(round((2 * extent + 12 * self.gamma) / self.h)) + 1
        positions = self.lo + self.h * torch.arange(knots, dtype=torch.float64)
        basis = torch.exp(-((positions[:, None] - self.centres.double()[None, :]) ** 2) / (2 * self.gamma**2))
        self.register_buffer("basis", basis.float(), persistent=False)
        # start at phi(z) ~ initial_slope * z on the grid (a quadratic potential): with width = spacing,
        # sum_j mu_j exp(-(z - mu_j)^2 / 2 gamma^2) ~ sqrt(2 pi) z
        initial_slope = 0.1
        self.weights = nn.Parameter(
            (initial_slope / math.sqrt(2 * math.pi)) * torch.linspace(-extent, extent, count).repeat(channels, 1)
        )

    def exact(self, z: torch.Tensor) -> torch.Tensor:
        """The plain RBF sum (31 exponentials per value; slow, memory-hungry)."""
        basis = torch.exp(-((z.unsqueeze(-1) - self.centres) ** 2) / (2 * self.gamma**2))
        return (basis * self.weights.view(1, -1, 1, 1, self.weights.shape[1])).sum(-1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.shape[1] != self.weights.shape[0]:
            raise ValueError(f"RBF activation expects {self.weights.shape[0]} channels, got {z.shape[1]}")
        return _InterpolatedRBF.apply(z, self.weights.to(z.dtype), self.basis.to(z.dtype), self.lo, self.h)


class VariationalStage(nn.Module):
    """One stage: ``x - K^T phi(K x) - lambda Re(A^H(A x - y))`` with zero-mean kernels ``K``.

    ``K`` is the 'valid' correlation of the symmetrically (reflect-) padded image, so ``K x`` has the image size and
    ``K^T`` (full convolution followed by folding the padding back) is its exact adjoint. Both are computed by FFTs
    of the padded size (no wrap-around), which on the CPU is several times faster than ``conv2d`` with ``11 x 11``
    kernels and its backward pass.
    """

    def __init__(self, filters: int = 24, kernel_size: int = 11, rbf_count: int = 31, rbf_extent: float = 1.0,
                 generator: torch.Generator | None = None):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError("variational network kernels need an odd size")
        raw = torch.randn(filters, 1, kernel_size, kernel_size, generator=generator)
        raw = raw - raw.mean(dim=(2, 3), keepdim=True)
        self.kernels = nn.Parameter(0.5 * raw / raw.flatten(1).norm(dim=1).view(-1, 1, 1, 1))
        self.activation = RBFActivation(filters, rbf_count, rbf_extent)
        self.log_data_weight = nn.Parameter(torch.zeros(()))  # lambda_t = exp(.) > 0, starts at 1
        self.padding = kernel_size // 2

    def zero_mean_kernels(self) -> torch.Tensor:
        """The kernels projected to zero mean, ``(N_k, 1, k, k)``."""
        return self.kernels - self.kernels.mean(dim=(2, 3), keepdim=True)

    @property
    def data_weight(self) -> torch.Tensor:
        """``lambda_t > 0``."""
        return self.log_data_weight.exp()

    def filter_responses(self, x: torch.Tensor) -> torch.Tensor:
        """``K x``: ``(B, N_k, H, W)``."""
        padded = F.pad(x, (self.padding,) * 4, mode="reflect")
        size = padded.shape[-2:]
        spectrum = torch.fft.rfft2(self.zero_mean_kernels(), s=size).transpose(0, 1)  # (1, N_k, P, P/2+1)
        correlation = torch.fft.irfft2(torch.fft.rfft2(padded) * spectrum.conj(), s=size)
        return correlation[..., : x.shape[-2], : x.shape[-1]]

    def filter_adjoint(self, responses: torch.Tensor) -> torch.Tensor:
        """``K^T r = P^T sum_i k_i * r_i`` (full convolution, then fold the reflect padding back)."""
        size = (responses.shape[-2] + 2 * self.padding, responses.shape[-1] + 2 * self.padding)
        spectrum = torch.fft.rfft2(self.zero_mean_kernels(), s=size).transpose(0, 1)
        full = torch.fft.irfft2((torch.fft.rfft2(responses, s=size) * spectrum).sum(1, keepdim=True), s=size)
        return _fold_reflect_padding(full, self.padding)

    def regulariser_gradient(self, x: torch.Tensor) -> torch.Tensor:
        """``sum_i K_i^T phi_i(K_i x)``."""
        return self.filter_adjoint(self.activation(self.filter_responses(x)))

    def forward(self, x: torch.Tensor, y: torch.Tensor, operator) -> torch.Tensor:
        data_gradient = operator.adjoint_real(operator.forward(x) - y)
        return x - self.regulariser_gradient(x) - self.data_weight * data_gradient


def _fold_reflect_padding(padded: torch.Tensor, pad: int) -> torch.Tensor:
    """Adjoint of ``F.pad(x, (pad,) * 4, mode='reflect')``: add each padded border back onto the pixels it copied."""
    if pad == 0:
        return padded
    x = padded.clone()
    # padded rows 0..pad-1 copy interior rows pad..1, i.e. padded rows 2 pad..pad+1 (likewise at the other end)
    x[..., pad + 1 : 2 * pad + 1, :] += x[..., :pad, :].flip(-2)
    x[..., -2 * pad - 1 : -pad - 1, :] += x[..., -pad:, :].flip(-2)
    x = x[..., pad:-pad, :]
    x[..., :, pad + 1 : 2 * pad + 1] += x[..., :, :pad].flip(-1)
    x[..., :, -2 * pad - 1 : -pad - 1] += x[..., :, -pad:].flip(-1)
    return x[..., :, pad:-pad]


class VariationalNetwork(nn.Module):
    """``stages`` unrolled :class:`VariationalStage` steps from ``x_0 = Re(A^H y)``."""

    def __init__(self, stages: int = 10, filters: int = 24, kernel_size: int = 11, rbf_count: int = 31,
                 rbf_extent: float = 1.0, seed: int = 0):
        super().__init__()
        for name, value, low, high in (("stages", stages, 1, 64), ("filters", filters, 1, 512),
                                       ("kernel_size", kernel_size, 1, 31), ("rbf_count", rbf_count, 2, 256)):
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"variational network {name} must be an integer in [{low}, {high}], got {value!r}")
        if isinstance(rbf_extent, bool) or not isinstance(rbf_extent, (int, float)) or not 0 < rbf_extent <= 100:
            raise ValueError(f"variational network rbf_extent must be a number in (0, 100], got {rbf_extent!r}")
        generator = torch.Generator().manual_seed(seed)
        self.config = {"stages": int(stages), "filters": int(filters), "kernel_size": int(kernel_size),
                       "rbf_count": int(rbf_count), "rbf_extent": float(rbf_extent)}
        self.stages = nn.ModuleList(
            VariationalStage(filters, kernel_size, rbf_count, rbf_extent, generator) for _ in range(stages)
        )

    def iterates(self, y: torch.Tensor, operator):
        """Yield ``x_0, x_1, ..., x_T`` (``T`` = number of stages)."""
        x = operator.adjoint_real(y)
        yield x
        for stage in self.stages:
            x = stage(x, y, operator)
            yield x

    def forward(self, y: torch.Tensor, operator) -> torch.Tensor:
        x = None
        for iterate in self.iterates(y, operator):  # the output is the last stage's iterate
            x = iterate
        assert x is not None  # iterates() yields at least x_0
        return x


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


__all__ = ["RBFActivation", "VariationalNetwork", "VariationalStage", "parameter_count"]
