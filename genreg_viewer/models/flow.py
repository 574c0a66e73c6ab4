"""A multi-scale affine-coupling normalising flow (RealNVP / Glow style) on 1-channel images.

Used as an invertible generative prior (Asim, Daniels, Leong, Ahmed, Hand 2020, "Invertible generative models for
inverse problems"). The flow is a bijection ``f: x -> z`` of ``R^{H x W}`` with ``z ~ N(0, I)`` and the exact
change-of-variables likelihood (Dinh et al. 2017, RealNVP sec. 3.1; Kingma & Dhariwal 2018, Glow sec. 2)::

    log p(x) = log N(f(x); 0, I) + log |det df/dx|,      G = f^{-1} (the generative direction).

Architecture (``L = len(config.hidden)`` levels; the image is shifted to ``x - 1/2`` first)::

    for each level l:
        squeeze         (B, C, H, W) -> (B, 4C, H/2, W/2)                               log-det 0
        K x step:       actnorm -> invertible 1x1 conv (LU) -> affine coupling
        split (l < L-1): keep C/2 channels, factor out the others as a latent part
        eps = (out - mu(keep)) * exp(-s(keep))                                          log-det -sum s

* actnorm (Glow sec. 3.1): per-channel ``y = (x + b) * exp(log_a)``, initialised from the first training batch so
  that every channel has zero mean and unit variance; log-det ``H W sum(log_a)``.
* invertible 1x1 convolution (Glow sec. 3.2), LU-parameterised ``W = P (L + I) (U + diag(sign * exp(log_s)))``
  with ``P`` fixed, ``L`` strictly lower, ``U`` strictly upper; log-det ``H W sum(log_s)``.
* affine coupling (RealNVP sec. 3.2): ``x = [x_a, x_b]``, ``y_b = x_b * exp(s(x_a)) + t(x_a)``, ``y_a = x_a``, with
  the bounded log-scale ``s = bound * tanh(raw / bound)`` (so ``|s| < bound`` and the map stays well conditioned);
  ``(raw, t)`` come from a small CNN (3x3 conv, ReLU, 1x1 conv, ReLU, zero-initialised 3x3 conv), so every coupling
  starts as the identity. log-det ``sum s``.
* split with a learned conditional prior (as in Glow's multi-scale architecture), written as one more affine
  coupling so that the factored-out latent is *standard normal*: the whole latent ``z`` (all factored parts and
  the last level's output, flattened and concatenated, ``H W`` numbers) has the prior ``N(0, I)`` and
  ``||z||^2`` is a meaningful regulariser.

Every map is exactly invertible in closed form; :meth:`Flow.encode` returns ``(z, log|det df/dx|)`` and
:meth:`Flow.decode` is ``G``. Batched ``(B, 1, H, W)`` tensors on any device and in float32 or float64.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..validators import is_finite_number
from .generator_common import (ImageGenerator, JsonConfig, check_sizes, generator_from_weights,
                               is_integer)
from .weights import save_weights, weights_exist

MODEL_TYPE = "genreg-flow"
#: the bundled flow is ``resources/weights/flow.{safetensors,json}``
BUNDLED_NAME = "flow"
#: dequantisation bins of the bits/dim figures (8-bit images)
DEFAULT_BINS = 256


@dataclass
class FlowConfig(JsonConfig):
    """Architecture of a :class:`Flow` (stored in the weights JSON).

    ``hidden`` gives the width of the coupling networks of each level (its length is the number of levels, each a
    squeeze that halves the resolution), ``steps_per_level`` the number of (actnorm, 1x1 conv, coupling) steps per
    level, ``scale_bound`` the bound on the coupling log-scales.
    """

    label = "flow"
    tuple_fields = ("hidden",)

    image_size: int = 128
    hidden: tuple[int, ...] = (16, 32, 64, 96)
    steps_per_level: int = 4
    scale_bound: float = 2.0

    def __post_init__(self) -> None:
        self.hidden = tuple(self.hidden)
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` with a clear message for an inconsistent configuration."""
        check_sizes(self, "flow", {"image_size": 1024, "steps_per_level": 64}, {"hidden": 1024})
        if not self.hidden or not all(is_integer(h) and h > 0 for h in self.hidden):
            raise ValueError(f"hidden must be a non-empty list of positive integers, got {list(self.hidden)!r}")
        factor = 2 ** len(self.hidden)
        if not is_integer(self.image_size) or self.image_size < factor or self.image_size % factor:
            raise ValueError(
                f"image_size {self.image_size!r} must be a positive multiple of 2^levels = {factor} "
                f"({len(self.hidden)} levels, each halving the resolution)"
            )
        if not is_integer(self.steps_per_level) or self.steps_per_level < 1:
            raise ValueError(f"steps_per_level must be a positive integer, got {self.steps_per_level!r}")
        if not is_finite_number(self.scale_bound) or not 0 < self.scale_bound <= 10:
            raise ValueError(f"scale_bound must be a number in (0, 10], got {self.scale_bound!r}")

    @property
    def levels(self) -> int:
        return len(self.hidden)

    @property
    def dimension(self) -> int:
        """Latent dimension ``= H * W``."""
        return self.image_size * self.image_size


# ------------------------------------------------------------------------------------------------ building blocks
def squeeze(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W) -> (B, 4C, H/2, W/2)``: each 2x2 block becomes four channels (RealNVP sec. 3.6)."""
    b, c, h, w = x.shape
    x = x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
    return x.reshape(b, 4 * c, h // 2, w // 2)


def unsqueeze(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`squeeze`."""
    b, c, h, w = x.shape
    x = x.view(b, c // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
    return x.reshape(b, c // 4, 2 * h, 2 * w)


def bounded_log_scale(raw: torch.Tensor, bound: float) -> torch.Tensor:
    """``bound * tanh(raw / bound)``: identity near 0, never beyond ``+-bound``."""
    return bound * torch.tanh(raw / bound)


class ActNorm(nn.Module):
    """``y = (x + bias) * exp(log_scale)`` per channel; log-det ``H W sum(log_scale)`` (Glow sec. 3.1).

    Data-dependent initialisation: the first forward (data -> latent) call in training mode sets ``bias`` and
    ``log_scale`` so that the batch has zero mean and unit variance per channel; ``initialized`` is saved with the
    weights, so a loaded model is never re-initialised.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.log_scale = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.register_buffer("initialized", torch.tensor(0, dtype=torch.uint8))

    @torch.no_grad()
    def _initialize(self, x: torch.Tensor) -> None:
        mean = x.mean(dim=(0, 2, 3), keepdim=True)
        std = x.std(dim=(0, 2, 3), keepdim=True) if x[:, 0].numel() > 1 else torch.ones_like(mean)
        self.bias.copy_(-mean)
        self.log_scale.copy_(-torch.log(std.clamp_min(1e-3)))
        self.initialized.fill_(1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.training and not bool(self.initialized):
            self._initialize(x)
        logdet = self.log_scale.sum() * x.shape[2] * x.shape[3]
        return (x + self.bias) * torch.exp(self.log_scale), logdet.expand(x.shape[0])

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y * torch.exp(-self.log_scale) - self.bias


class InvertibleConv1x1(nn.Module):
    """Invertible 1x1 convolution ``y = W x`` with ``W = P (L + I) (U + diag(sign * exp(log_s)))`` (Glow sec. 3.2).

    ``W`` starts as a random rotation (seeded by torch's global generator, like every other initialisation);
    log-det ``H W sum(log_s)``.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        rotation, _ = torch.linalg.qr(torch.randn(channels, channels, dtype=torch.float64))
        permutation, lower, upper = torch.linalg.lu(rotation)
        diagonal = torch.diagonal(upper)
        self.register_buffer("permutation", permutation.float())
        self.register_buffer("sign", torch.sign(diagonal).float())
        self.register_buffer("lower_mask", torch.tril(torch.ones(channels, channels), -1))
        self.lower = nn.Parameter(torch.tril(lower, -1).float())
        self.upper = nn.Parameter(torch.triu(upper, 1).float())
        self.log_s = nn.Parameter(torch.log(diagonal.abs()).float())

    def weight(self) -> torch.Tensor:
        eye = torch.eye(self.lower.shape[0], dtype=self.lower.dtype, device=self.lower.device)
        lower = self.lower * self.lower_mask + eye
        upper = self.upper * self.lower_mask.T + torch.diag(self.sign * torch.exp(self.log_s))
        return self.permutation @ lower @ upper

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        weight = self.weight()
        logdet = self.log_s.sum() * x.shape[2] * x.shape[3]
        return F.conv2d(x, weight[:, :, None, None]), logdet.expand(x.shape[0])

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        weight = torch.linalg.inv(self.weight())
        return F.conv2d(y, weight[:, :, None, None])


def _zero_conv(in_channels: int, out_channels: int) -> nn.Conv2d:
    conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
    nn.init.zeros_(conv.weight)
    assert conv.bias is not None
    nn.init.zeros_(conv.bias)
    return conv


class AffineCoupling(nn.Module):
    """``y_a = x_a``, ``y_b = x_b * exp(s(x_a)) + t(x_a)`` with ``s = bound tanh(raw/bound)``; log-det ``sum s``
    (RealNVP sec. 3.2). ``x_a`` is the first ``C // 2`` channels."""

    def __init__(self, channels: int, hidden: int, bound: float) -> None:
        super().__init__()
        self.split = channels // 2
        self.bound = float(bound)
        out = channels - self.split
        self.net = nn.Sequential(
            nn.Conv2d(self.split, hidden, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(hidden, hidden, 1),
            nn.ReLU(),
            _zero_conv(hidden, 2 * out),
        )

    def _scale_shift(self, x_a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raw, shift = self.net(x_a).chunk(2, dim=1)
        return bounded_log_scale(raw, self.bound), shift

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x_a, x_b = x[:, : self.split], x[:, self.split :]
        log_scale, shift = self._scale_shift(x_a)
        y_b = x_b * torch.exp(log_scale) + shift
        return torch.cat([x_a, y_b], dim=1), log_scale.flatten(1).sum(1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        y_a, y_b = y[:, : self.split], y[:, self.split :]
        log_scale, shift = self._scale_shift(y_a)
        return torch.cat([y_a, (y_b - shift) * torch.exp(-log_scale)], dim=1)


class FlowStep(nn.Module):
    """actnorm -> invertible 1x1 conv -> affine coupling (one Glow step)."""

    def __init__(self, channels: int, hidden: int, bound: float) -> None:
        super().__init__()
        self.actnorm = ActNorm(channels)
        self.mix = InvertibleConv1x1(channels)
        self.coupling = AffineCoupling(channels, hidden, bound)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, a = self.actnorm(x)
        x, b = self.mix(x)
        x, c = self.coupling(x)
        return x, a + b + c

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return self.actnorm.inverse(self.mix.inverse(self.coupling.inverse(y)))


class ConditionalSplit(nn.Module):
    """Factor out half the channels with a learned Gaussian prior conditioned on the kept half, as an affine map:
    ``eps = (x_out - mu(x_keep)) * exp(-s(x_keep))`` (log-det ``-sum s``), so that ``eps ~ N(0, I)``."""

    def __init__(self, channels: int, bound: float) -> None:
        super().__init__()
        self.keep = channels // 2
        self.bound = float(bound)
        self.prior = _zero_conv(self.keep, 2 * (channels - self.keep))

    def _mean_log_std(self, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, raw = self.prior(keep).chunk(2, dim=1)
        return mean, bounded_log_scale(raw, self.bound)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x -> (kept channels, eps, log-det)``."""
        keep, out = x[:, : self.keep], x[:, self.keep :]
        mean, log_std = self._mean_log_std(keep)
        return keep, (out - mean) * torch.exp(-log_std), -log_std.flatten(1).sum(1)

    def inverse(self, keep: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        mean, log_std = self._mean_log_std(keep)
        return torch.cat([keep, eps * torch.exp(log_std) + mean], dim=1)


# ------------------------------------------------------------------------------------------------------ the flow
class Flow(ImageGenerator, nn.Module):
    """The multi-scale flow ``f: x -> z`` (see the module docstring); ``G = f^{-1}`` is :meth:`decode`.
    ``freeze()`` (eval mode, no gradients) makes it a fixed prior."""

    generator_name = "the flow"

    def __init__(self, config: FlowConfig) -> None:
        super().__init__(config)
        self.levels = nn.ModuleList()
        self.splits = nn.ModuleList()
        channels, size = 1, config.image_size
        self._latent_shapes: list[tuple[int, int, int]] = []
        for level, hidden in enumerate(config.hidden):
            channels, size = 4 * channels, size // 2
            self.levels.append(nn.ModuleList(
                FlowStep(channels, hidden, config.scale_bound) for _ in range(config.steps_per_level)
            ))
            if level < config.levels - 1:
                self.splits.append(ConditionalSplit(channels, config.scale_bound))
                self._latent_shapes.append((channels - channels // 2, size, size))
                channels //= 2
        self._latent_shapes.append((channels, size, size))

    # -- shapes -------------------------------------------------------------------------------------------------
    @property
    def dimension(self) -> int:
        return self.config.dimension

    latent_dimension = dimension

    def _split_latent(self, z: torch.Tensor) -> list[torch.Tensor]:
        parts, start = [], 0
        for shape in self._latent_shapes:
            count = shape[0] * shape[1] * shape[2]
            parts.append(z[:, start : start + count].reshape(z.shape[0], *shape))
            start += count
        return parts

    # -- the two directions -------------------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x (B,1,H,W) -> (z (B, H*W), log|det df/dx| (B,))``."""
        self._check_images(x)
        h = x - 0.5
        logdet = x.new_zeros(x.shape[0])
        parts = []
        for level, steps in enumerate(self.levels):
            h = squeeze(h)
            for step in steps:  # type: ignore[attr-defined]  # a ModuleList of ModuleLists
                h, step_logdet = step(h)
                logdet = logdet + step_logdet
            if level < len(self.splits):
                h, eps, split_logdet = self.splits[level](h)
                logdet = logdet + split_logdet
                parts.append(eps.flatten(1))
        parts.append(h.flatten(1))
        return torch.cat(parts, dim=1), logdet

    forward = encode

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``G(z) = f^{-1}(z)``: latents ``(B, H*W)`` to images ``(B, 1, H, W)``."""
        self._check_latent(z)
        parts = self._split_latent(z)
        h = parts[-1]
        for level in reversed(range(len(self.levels))):
            if level < len(self.splits):
                h = self.splits[level].inverse(h, parts[level])
            for step in reversed(self.levels[level]):  # type: ignore[call-overload]  # a ModuleList
                h = step.inverse(h)
            h = unsqueeze(h)
        return h + 0.5

    # -- likelihood ---------------------------------------------------------------------------------------------
    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``log p(x) = log N(f(x); 0, I) + log|det df/dx|`` in nats, per image ``(B,)`` (a density on R^{HxW})."""
        z, logdet = self.encode(x)
        return -0.5 * (z.square().sum(1) + z.shape[1] * math.log(2 * math.pi)) + logdet

    def bits_per_dim(self, x: torch.Tensor, bins: int = DEFAULT_BINS) -> torch.Tensor:
        """``(-log p(x) + D log(bins)) / (D log 2)`` per image: the code length of ``bins``-level images whose
        dequantised version is ``x`` (``x`` must already carry the uniform dequantisation noise)."""
        dims = x[0].numel()
        return (-self.log_prob(x) + dims * math.log(bins)) / (dims * math.log(2.0))

    @torch.no_grad()
    def sample(self, count: int, temperature: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
        """``G(T u)``, ``u ~ N(0, I)`` drawn on the CPU (device-independent), ``(count, 1, H, W)``."""
        parameter = next(self.parameters())
        u = torch.randn((count, self.dimension), generator=generator, dtype=parameter.dtype)
        return self.decode(temperature * u.to(parameter.device))

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> "Flow":
        """Data-dependent actnorm initialisation from the batch ``x`` (done once, before training)."""
        was_training = self.training
        self.train()
        try:
            self.encode(x)
        finally:
            self.train(was_training)
        return self


def dequantize(x: torch.Tensor, generator: torch.Generator, bins: int = DEFAULT_BINS) -> torch.Tensor:
    """``(floor(bins x) + u) / bins`` with ``u ~ U[0, 1)`` drawn on the CPU: images in [0, 1] become continuous
    samples whose density the flow can model without collapsing onto discrete values (Theis et al. 2016)."""
    levels = torch.clamp(torch.floor(x.clamp(0, 1) * bins), max=bins - 1)
    noise = torch.rand(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    return (levels + noise) / bins


# ------------------------------------------------------------------------------------------------------- files
def save_flow(model: Flow, stem: str | os.PathLike, info: Mapping[str, Any] | None = None) -> tuple[Path, Path]:
    """Write ``stem.safetensors`` and ``stem.json`` (config and ``info``) atomically."""
    return save_weights(model, stem, {"model": MODEL_TYPE, **model.config.to_dict()}, info)


def flow_from_weights(stem: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[Flow, dict]:
    """Rebuild a :class:`Flow` from ``stem`` (eval mode, frozen) and return it with its info."""
    return generator_from_weights(stem, MODEL_TYPE, FlowConfig, Flow, device)


def bundled_flow_stem(weight_set=None) -> Path:
    """The flow of ``weight_set`` (default: the bundled default set) or its fallback."""
    from ..weight_sets import find_weights

    return find_weights(BUNDLED_NAME, weight_set)[0]


def bundled_flow_available() -> tuple[bool, str]:
    """``(True, "")`` when ``flow.{safetensors,json}`` exist in the set availability checks look in
    (:func:`~genreg_viewer.weight_sets.availability_weight_set`) or its fallback, else ``(False, why)``."""
    from ..weight_sets import availability_weight_set, not_recorded

    with not_recorded():  # a check, not a use
        stem = bundled_flow_stem(availability_weight_set())
    if not weights_exist(stem):
        return False, (f"no bundled flow weights ({stem.name}.safetensors/.json) in {stem.parent}; "
                       "train them with 'genreg train flow'")
    return True, ""


__all__ = [
    "DEFAULT_BINS",
    "Flow",
    "FlowConfig",
    "bundled_flow_available",
    "bundled_flow_stem",
    "dequantize",
    "flow_from_weights",
    "save_flow",
    "squeeze",
    "unsqueeze",
]
