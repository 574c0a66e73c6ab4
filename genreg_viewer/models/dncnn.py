"""DnCNN denoiser with real spectral normalisation (RealSN), for plug-and-play ADMM.

Ryu, Liu, Wang, Chen, Wang, Yin (2019), "Plug-and-play methods provably converge with properly trained denoisers":
PnP-ADMM converges when the residual ``R = I - D`` of the denoiser is Lipschitz with a small constant. DnCNN
(Zhang et al. 2017) learns exactly that residual, ``D(x) = x - R(x)``; RealSN bounds ``Lip(R)`` by bounding the
*operator* norm of every convolution layer (the norm of ``x -> conv(x)`` as a linear map between images, estimated
by power iteration on the convolution and its transpose), not the norm of the reshaped ``C_out x (C_in k k)``
weight matrix that ordinary spectral normalisation uses. With every conv layer of norm ``<= 1`` and 1-Lipschitz
ReLUs (no batch normalisation), ``Lip(R) <= 1``.

This DnCNN is noise-level conditioned, so one network covers a range of denoiser strengths: the noise level ``s``
sets per-channel biases of every hidden layer (see :class:`RealSNDnCNN`), which leaves the Lipschitz bound in ``x``
unchanged for every fixed ``s``.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def conv_operator_norm(
    weight: torch.Tensor,
    image_shape: tuple[int, int],
    iterations: int = 100,
    padding: int | None = None,
    start: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Operator norm ``||K||_2 = max_{||u||=1} ||conv(u, W)||`` of a zero-padded 2-D convolution on images of
    ``image_shape``, by power iteration on ``K^T K`` (``K^T`` = the transposed convolution).

    Returns ``(sigma, u)``: the estimate (a scalar tensor, converging from below) and the unit-norm right singular
    vector estimate of shape ``(1, C_in, H, W)`` (pass it back as ``start`` to continue the iteration).
    """
    out_channels, in_channels, kh, kw = weight.shape
    pad = kh // 2 if padding is None else padding
    with torch.no_grad():
        if start is None:
            u = torch.randn((1, in_channels, *image_shape), generator=generator, dtype=weight.dtype).to(weight.device)
        else:
            u = start.to(weight.device, weight.dtype)
        u = u / u.norm().clamp_min(1e-12)
        for _ in range(iterations):
            v = F.conv2d(u, weight, padding=pad)
            u = F.conv_transpose2d(v, weight, padding=pad)
            u = u / u.norm().clamp_min(1e-12)
        sigma = F.conv2d(u, weight, padding=pad).norm()
    return sigma, u


def conv_symbol_norm(weight: torch.Tensor, grid: int = 128) -> torch.Tensor:
    """Certified upper bound of the operator norm of a zero-padded convolution on images of *any* size.

    A zero-padded convolution on an ``n x n`` image is a compression of the convolution on the infinite grid, whose
    norm is ``sup_w ||W^(w)||_2`` over frequencies ``w``, with ``W^(w)`` the ``C_out x C_in`` matrix of kernel
    Fourier coefficients. The supremum is bounded from samples on a ``grid x grid`` frequency lattice: for a kernel
    of radius ``d`` (``d = 1`` for ``3 x 3``), ``g(w) = u^H W^(w)^H W^(w) u`` is band-limited with frequencies of
    size ``<= 2 sqrt(2) d`` along any line, so by Bernstein's inequality its maximum ``sigma^2`` is within
    ``1 - 8 pi^2 d^2 / grid^2`` of its value at the nearest lattice point, giving
    ``sigma <= max_lattice ||W^|| / sqrt(1 - 8 pi^2 d^2 / grid^2)`` (0.24% above the lattice maximum for
    ``d = 1``, ``grid = 128``). Real kernels have ``W^(-w) = conj(W^(w))``, so half the lattice suffices.
    """
    radius = max(weight.shape[-2:]) // 2
    shrink = 1.0 - 8.0 * (math.pi * radius / grid) ** 2
    if shrink <= 0:
        raise ValueError(f"frequency grid {grid} is too coarse for kernels of size {tuple(weight.shape[-2:])}")
    spectrum = torch.fft.rfft2(weight.detach().to(torch.float64), s=(grid, grid))  # (C_out, C_in, g, g/2+1)
    matrices = spectrum.permute(2, 3, 0, 1).reshape(-1, weight.shape[0], weight.shape[1])
    lattice_max = torch.linalg.matrix_norm(matrices, ord=2).max()
    return (lattice_max / math.sqrt(shrink)).to(weight.dtype)


class RealSNConv2d(nn.Module):
    """A ``k x k`` zero-padded convolution whose operator norm is kept ``<= bound`` (RealSN, Ryu et al. 2019).

    The effective weight is ``W / max(1, sigma(W) / bound)`` where ``sigma(W)`` is the operator norm of the
    convolution. During training one power-iteration step per forward pass on ``power_shape`` images refines a
    persistent singular-vector estimate ``u`` and ``sigma = ||conv(u, W)||`` is differentiated with respect to
    ``W`` (Miyato et al. 2018 style, but on the convolution operator). In evaluation the stored ``sigma`` is used;
    :meth:`refresh_norm` replaces it before export by a bound valid on every image size (the norm of a zero-padded
    convolution grows slightly with the image size, and power iteration approaches it from below).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        bias: bool = True,
        bound: float = 1.0,
        power_shape: tuple[int, int] = (64, 64),
    ):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError("RealSNConv2d needs an odd kernel size ('same' zero padding)")
        self.padding = kernel_size // 2
        self.bound = float(bound)
        weight = torch.empty(out_channels, in_channels, kernel_size, kernel_size)
        nn.init.kaiming_normal_(weight, nonlinearity="relu")
        # start near the constraint (operator norm ~ bound, estimated on small images): Adam's steps are then
        # commensurate with the weights the layer actually applies
        initial_norm, _ = conv_operator_norm(weight, (16, 16), 30, self.padding)
        self.weight = nn.Parameter(weight * (min(self.bound, 1.0) / float(initial_norm)))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        start = torch.randn(1, in_channels, *power_shape)
        self.u: torch.Tensor  # singular-vector estimate (a buffer)
        self.sigma: torch.Tensor  # operator-norm estimate used in evaluation (a buffer)
        self.register_buffer("u", start / start.norm(), persistent=False)
        self.register_buffer("sigma", torch.ones(()))

    def refresh_norm(self, image_shape: tuple[int, int] = (128, 128), iterations: int = 200) -> tuple[float, float]:
        """Store a certified operator-norm bound for evaluation (call after training, before export).

        Power iteration (``iterations`` steps on ``image_shape`` images, started from the training estimate)
        converges from below and can stop short by a fraction of a percent, so the stored ``sigma`` is
        ``max(power estimate, conv_symbol_norm(W))``: an upper bound of the norm on every image size.
        Returns ``(power estimate, stored sigma)`` for the raw weight.
        """
        start = F.interpolate(self.u, size=image_shape, mode="bilinear", align_corners=False)
        estimate, _ = conv_operator_norm(self.weight.detach(), image_shape, iterations, self.padding, start=start)
        bound = conv_symbol_norm(self.weight)
        self.sigma.copy_(torch.maximum(estimate, bound))
        return float(estimate), float(self.sigma)

    def _training_sigma(self) -> torch.Tensor:
        with torch.no_grad():
            shape = (int(self.u.shape[-2]), int(self.u.shape[-1]))
            _, u = conv_operator_norm(self.weight.detach(), shape, 1, self.padding, start=self.u)
            self.u.copy_(u)
        sigma = F.conv2d(self.u, self.weight, padding=self.padding).norm()
        self.sigma.copy_(sigma.detach())
        return sigma

    def effective_weight(self) -> torch.Tensor:
        """``W / max(1, sigma / bound)``: the weight actually applied."""
        sigma = self._training_sigma() if self.training else self.sigma
        return self.weight / torch.clamp(torch.as_tensor(sigma / self.bound), min=1.0)

    @torch.no_grad()
    def rescale_weight_(self) -> None:
        """Replace the raw weight by the effective one, ``W <- W / max(1, sigma / bound)`` (the applied weight does
        not change). Called after optimiser steps it keeps ``W`` at the constraint's scale: the normalised layer is
        invariant to the scale of ``W``, so a growing ``W`` would otherwise shrink Adam's effective step size."""
        scale = torch.clamp(torch.as_tensor(self.sigma / self.bound), min=1.0)
        self.weight.div_(scale)
        self.sigma.div_(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.effective_weight(), self.bias, padding=self.padding)


#: limits of a DnCNN config (a weights file's JSON is untrusted): the bundled networks have 6 layers of 32 channels
MAX_LAYERS = 64
MAX_CHANNELS = 512
#: each layer's operator-norm bound; the bundled networks use 1 (a non-expansive residual for PnP's convergence)
MAX_BOUND = 4.0


class RealSNDnCNN(nn.Module):
    """Noise-level-conditioned DnCNN with RealSN convolutions: ``D(x, s) = x - R(x, s)``.

    ``layers`` convolutions of ``3 x 3`` (first: 1 -> ``channels``, then ``channels -> channels``, last:
    ``channels -> 1``, no bias) with ReLU in between and no batch normalisation::

        h_0 = x,   h_l = ReLU(K_l h_{l-1} + b_l + B_l f(s)),   R(x, s) = K_L h_{L-1}

    The noise level enters only through the per-channel biases ``B_l f(s)`` with features
    ``f(s) = (s / s_ref, ln(s / s_ref))``, ``s_ref = 0.05`` (noise-dependent ReLU thresholds, like the
    ``sigma``-proportional thresholds of shrinkage denoisers). For every fixed ``s`` the map ``x -> R(x, s)`` is
    then a chain of convolutions of operator norm ``<= bound`` and 1-Lipschitz ReLUs, so ``Lip(R) <= bound^L``.
    (Feeding ``s`` as an extra image channel, as FFDNet does, would put it under the same norm bound and starve the
    conditioning: ``s`` is much smaller than the image values.)

    Input and output are ``(B, 1, H, W)`` images in the training range [0, 1]; ``noise_level`` is the Gaussian
    noise std (same units) to remove: a float or a ``(B,)`` tensor.
    """

    LEVEL_REFERENCE = 0.05

    def __init__(self, layers: int = 6, channels: int = 32, bound: float = 1.0,
                 power_shape: tuple[int, int] = (64, 64)):
        super().__init__()
        for name, value, most in (("layers", layers, MAX_LAYERS), ("channels", channels, MAX_CHANNELS)):
            if isinstance(value, bool) or not isinstance(value, int) or not (2 if name == "layers" else 1) <= value \
                    <= most:
                raise ValueError(f"DnCNN {name} must be an integer in [{2 if name == 'layers' else 1}, {most}], "
                                 f"got {value!r}")
        if isinstance(bound, bool) or not isinstance(bound, (int, float)) or not 0 < bound <= MAX_BOUND:
            raise ValueError(f"DnCNN bound (each layer's operator norm) must be a number in (0, {MAX_BOUND:g}], "
                             f"got {bound!r}")
        self.config = {"layers": int(layers), "channels": int(channels), "bound": float(bound)}
        convs = [RealSNConv2d(1, channels, bound=bound, power_shape=power_shape)]
        convs += [RealSNConv2d(channels, channels, bound=bound, power_shape=power_shape) for _ in range(layers - 2)]
        convs.append(RealSNConv2d(channels, 1, bias=False, bound=bound, power_shape=power_shape))
        self.convs = nn.ModuleList(convs)
        self.level_biases = nn.ModuleList(nn.Linear(2, channels) for _ in range(layers - 1))
        for linear in self.level_biases:
            assert isinstance(linear, nn.Linear)
            nn.init.zeros_(linear.weight)
            nn.init.zeros_(linear.bias)

    def level_features(self, noise_level: float | torch.Tensor, batch: int, like: torch.Tensor) -> torch.Tensor:
        """``f(s) = (s / s_ref, ln(s / s_ref))`` per batch item, ``(B, 2)``."""
        level = torch.as_tensor(noise_level, dtype=like.dtype, device=like.device).reshape(-1)
        if level.numel() == 1:
            level = level.expand(batch)
        if level.numel() != batch:
            raise ValueError(f"got {level.numel()} noise levels for a batch of {batch} images")
        if not bool((level > 0).all()):
            raise ValueError("noise levels must be positive")
        ratio = level / self.LEVEL_REFERENCE
        return torch.stack([ratio, torch.log(ratio)], dim=1)

    def residual(self, x: torch.Tensor, noise_level: float | torch.Tensor) -> torch.Tensor:
        """``R(x, s)``: the estimated noise."""
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"DnCNN expects (B, 1, H, W) images, got shape {tuple(x.shape)}")
        features = self.level_features(noise_level, x.shape[0], x)
        h = x
        for conv, level_bias in zip(self.convs[:-1], self.level_biases):
            h = F.relu(conv(h) + level_bias(features)[:, :, None, None])
        return self.convs[-1](h)

    def forward(self, x: torch.Tensor, noise_level: float | torch.Tensor) -> torch.Tensor:
        """The denoised image ``x - R(x, s)``."""
        return x - self.residual(x, noise_level)

    def rescale_weights_(self) -> None:
        """:meth:`RealSNConv2d.rescale_weight_` on every layer (after each training step)."""
        for conv in self.convs:
            conv.rescale_weight_()

    def refresh_norms(self, image_shape: tuple[int, int] = (128, 128),
                      iterations: int = 200) -> list[tuple[float, float]]:
        """:meth:`RealSNConv2d.refresh_norm` on every layer: ``(power estimate, stored bound)`` of the raw weights."""
        return [conv.refresh_norm(image_shape, iterations) for conv in self.convs]
