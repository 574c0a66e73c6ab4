"""The VAE with structured image covariance (Duff, Simpson, Ehrhardt, Campbell 2023, section 4).

Generative model (paper eqs. for the decoder likelihood)::

    z ~ N(0, I_d),    x | z ~ N(G(z), Sigma(z)),    Sigma(z)^{-1} = L(z) L(z)^T

with ``L(z)`` sparse lower-triangular in raster order (:class:`~genreg_viewer.models.cholesky.SparseCholesky`), so
``-log p(x|z) = 1/2 ||L(z)^T (x - G(z))||^2 - sum_p l_p(z) + n/2 log(2 pi)``, ``L_pp = exp(l_p)``. The encoder is
``q(z|x) = N(mu(x), diag(s^2(x)))``.

Networks (resnet-style blocks: conv, resize, two convs, ReLU, plus a resized 1x1 skip; batch norm; dropout in
training when configured):

* encoder: a stem (3x3 conv, or with ``patch > 1`` a ``patch x patch`` conv of stride ``patch``), ``len(widths)``
  blocks that halve the resolution with a stride-2 conv, a linear map to ``(mu, log s^2)``;
* mean decoder ``G``: a linear map from ``z`` to the coarsest feature map, blocks that double the resolution by
  bilinear up-sampling, a 3x3 conv to one channel (with ``patch > 1``: to ``patch^2`` sub-pixel channels arranged
  into ``patch x patch`` pixel blocks, i.e. pixel shuffle);
* covariance decoder: the same shape as ``G`` with ``1 + F`` output channels (``F = (k^2 - 1)/2`` later raster
  neighbours in a ``k x k`` window: 4 for 3x3, 12 for 5x5). Channel 0 is squashed into the bounded log-diagonal
  ``l = l_min + (l_max - l_min) sigmoid(raw)`` (the likelihood stays bounded; a pixel std is roughly ``exp(-l)``);
  channels ``1..F`` are the off-diagonal entries of ``L``, parameterised relative to the diagonal,
  ``L_qp = exp(l_p) a_qp`` (``a`` = raw output), so that ``(L^T r)_p = exp(l_p) (r_p + sum_q a_qp r_q)``: a
  conditional autoregression whose coefficients do not depend on the noise level.

Sizes: the paper's layout (``PAPER_WIDTHS`` 64/128/256/512 with ``PAPER_DECODER_WIDTHS`` 512/256/128/64 from an
8x8x256 map, ``patch = 1``: stem and output at full resolution, dropout; about 24 M parameters) is for GPU users;
the slim default (``SLIM_WIDTHS``, ``patch = 4``: levels at 32, 16, 8 and 4 pixels) trains on a 2-core
CPU in about 15 minutes and is what ``resources/weights`` ships. Full-resolution 3x3 convs with few channels are
memory-bound on a CPU; the patch stem and sub-pixel output give ~4x more training steps per minute (after 4 minutes
of training on phantoms: 18.8 dB held-out PSNR against 16.5 dB for a five-level full-resolution layout).

Covariance kinds: ``identity`` (``Sigma = rho I``, no covariance decoder, ``rho`` stored in the config),
``diagonal`` (only ``l`` is learned, off-diagonals zero) and ``covar`` (all channels).
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .cholesky import SparseCholesky
from ..validators import is_finite_number
from .generator_common import (ImageGenerator, JsonConfig, check_sizes, generator_from_weights,
                               is_integer)
from .weights import WeightsError, read_weights_json, save_weights, weights_exist, weights_paths, weights_stem

COVARIANCE_KINDS = ("identity", "diagonal", "covar")
NEIGHBOURHOODS = (3, 5)
PATCHES = (1, 2, 4)
#: the largest magnitude of a log-diagonal entry of L (bounds and identity_rho): the precision exp(2 l) stays below
#: exp(24) ~ 2.6e10, far beyond any image's (a std of 1e-4 is l = 9.2); beyond, float32 sums overflow to NaN
MAX_LOG_DIAG = 12.0
#: upper bounds of a VAE config (a weights file's JSON is untrusted; the networks are also compared with the stored
#: tensors before any is allocated): the paper's layout uses 512 channels, a 128 x 128 image and 100 latents
MAX_CHANNELS = 2048
MAX_IMAGE_SIZE = 1024
MAX_LATENT = 65536
#: the slim default (trainable on a 2-core CPU in minutes: a stride-4 patch stem and a 4x4 sub-pixel output around
#: three resolution levels) and a paper-sized layout for GPU users (full-resolution stem and output, five levels)
SLIM_WIDTHS: tuple[int, ...] = (32, 64, 128)
SLIM_PATCH = 4
#: the paper's layout (Duff et al. 2023, appendix): encoder levels 64/128/256/512 down to 8x8, decoder from an 8x8x256
#: map through up-blocks of 512/256/128/64 channels to 128x128, full-resolution stem and output, dropout
PAPER_WIDTHS: tuple[int, ...] = (64, 128, 256, 512)
PAPER_DECODER_WIDTHS: tuple[int, ...] = (512, 256, 128, 64)
PAPER_COARSE_CHANNELS = 256
PAPER_DROPOUT = 0.1
PAPER_PATCH = 1
#: tensors of the encoder and mean decoder (shared between the kinds of one trained VAE)
BASE_PREFIXES = ("encoder.", "mean_decoder.")
MODEL_TYPE = "genreg-vae"


def off_diagonal_count(neighbourhood: int) -> int:
    """``F = (k^2 - 1) / 2`` later raster neighbours in a ``k x k`` window."""
    return (neighbourhood * neighbourhood - 1) // 2


@dataclass
class VAEConfig(JsonConfig):
    """Architecture and covariance settings of a :class:`GenerativeModel` (stored in the weights JSON)."""

    label = "VAE"
    tuple_fields = ("widths", "decoder_widths")

    image_size: int = 128
    latent_dim: int = 100
    widths: tuple[int, ...] = SLIM_WIDTHS
    #: channels after each decoder up-block, coarse to fine (empty: the encoder's widths mirrored)
    decoder_widths: tuple[int, ...] = ()
    #: channels of the coarse map the decoder's linear head produces (0: ``widths[-1]``)
    coarse_channels: int = 0
    #: dropout probability after every residual block while training. The paper uses dropout; the slim model
    #: underfits its phantom training set (held-out error = training error), so it defaults to none.
    dropout: float = 0.0
    patch: int = SLIM_PATCH
    batch_norm: bool = True
    covariance_kind: str = "covar"
    neighbourhood: int = 3
    log_diag_min: float = -2.0
    log_diag_max: float = 6.0
    identity_rho: float | None = None
    #: 0: a latent vector of ``latent_dim`` (linear heads, the paper's layout); ``c > 0``: a spatial latent grid,
    #: ``c`` channels per cell of the coarsest feature map (convolutional heads, so the whole model is fully
    #: convolutional), and ``latent_dim`` must be ``c * coarse_size^2``
    latent_channels: int = 0
    #: residual blocks at the coarsest resolution after the encoder's last and before the decoder's first resize
    coarse_blocks: int = 0

    def __post_init__(self) -> None:
        self.widths = tuple(self.widths)
        self.decoder_widths = tuple(self.decoder_widths)
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` with a clear message for an inconsistent configuration."""
        check_sizes(self, "VAE", {"latent_dim": MAX_LATENT, "image_size": MAX_IMAGE_SIZE,
                                  "coarse_channels": MAX_CHANNELS, "latent_channels": MAX_CHANNELS},
                    {"widths": MAX_CHANNELS, "decoder_widths": MAX_CHANNELS})
        if not is_integer(self.latent_dim) or self.latent_dim < 1:
            raise ValueError(f"latent_dim must be a positive integer, got {self.latent_dim!r}")
        if not self.widths or not all(is_integer(w) and w > 0 for w in self.widths):
            raise ValueError(f"widths must be a non-empty list of positive integers, got {list(self.widths)!r}")
        if self.decoder_widths and (len(self.decoder_widths) != len(self.widths)
                                    or not all(is_integer(w) and w > 0 for w in self.decoder_widths)):
            raise ValueError(f"decoder_widths must be empty or {len(self.widths)} positive integers (one per "
                             f"up-block), got {list(self.decoder_widths)!r}")
        if not is_integer(self.latent_channels) or self.latent_channels < 0:
            raise ValueError(f"latent_channels must be a non-negative integer, got {self.latent_channels!r}")
        if not is_integer(self.coarse_blocks) or not 0 <= self.coarse_blocks <= 16:
            raise ValueError(f"coarse_blocks must be an integer in [0, 16], got {self.coarse_blocks!r}")
        if not is_integer(self.coarse_channels) or self.coarse_channels < 0:
            raise ValueError(f"coarse_channels must be a non-negative integer, got {self.coarse_channels!r}")
        if self.patch not in PATCHES:
            raise ValueError(f"patch must be one of {PATCHES}, got {self.patch!r}")
        if not isinstance(self.batch_norm, bool):
            raise ValueError(f"batch_norm must be true or false, got {self.batch_norm!r}")
        factor = self.patch * 2 ** len(self.widths)
        if not is_integer(self.image_size) or self.image_size < factor or self.image_size % factor:
            raise ValueError(
                f"image_size {self.image_size!r} must be a positive multiple of patch * 2^len(widths) = {factor} "
                f"(patch {self.patch}, {len(self.widths)} down-sampling blocks)"
            )
        if not is_finite_number(self.dropout) or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.covariance_kind not in COVARIANCE_KINDS:
            raise ValueError(f"covariance_kind must be one of {COVARIANCE_KINDS}, got {self.covariance_kind!r}")
        if self.neighbourhood not in NEIGHBOURHOODS:
            raise ValueError(f"neighbourhood must be 3 or 5, got {self.neighbourhood!r}")
        lo, hi = self.log_diag_min, self.log_diag_max
        if not all(is_finite_number(v) for v in (lo, hi)) or lo >= hi:
            raise ValueError(f"need finite log_diag_min < log_diag_max, got ({lo!r}, {hi!r})")
        if not -MAX_LOG_DIAG <= lo < hi <= MAX_LOG_DIAG:  # exp(2 l) is the precision: beyond, float32 overflows
            raise ValueError(f"log_diag_min and log_diag_max must lie in [-{MAX_LOG_DIAG:g}, {MAX_LOG_DIAG:g}] (the "
                             f"precision exp(2 l) overflows float32 arithmetic beyond), got ({lo!r}, {hi!r})")
        if self.latent_channels and self.latent_dim != self.latent_channels * self.coarse_size**2:
            raise ValueError(
                f"a latent grid of {self.latent_channels} channels on the {self.coarse_size}x{self.coarse_size} coarse "
                f"map has latent_dim {self.latent_channels * self.coarse_size**2}, got {self.latent_dim!r}")
        if self.identity_rho is not None and not (is_finite_number(self.identity_rho) and self.identity_rho > 0):
            raise ValueError(f"identity_rho must be a positive number or None, got {self.identity_rho!r}")
        if self.identity_rho is not None and abs(0.5 * math.log(self.identity_rho)) > MAX_LOG_DIAG:
            raise ValueError(f"identity_rho must lie in [exp(-{2 * MAX_LOG_DIAG:g}), exp({2 * MAX_LOG_DIAG:g})] = "
                             f"[{math.exp(-2 * MAX_LOG_DIAG):.3g}, {math.exp(2 * MAX_LOG_DIAG):.3g}] (its log-diagonal "
                             f"-log(rho)/2 within +-{MAX_LOG_DIAG:g}), got {self.identity_rho!r}")

    @property
    def coarse_size(self) -> int:
        """Side of the coarsest feature map: ``image_size / (patch * 2^len(widths))``."""
        return self.image_size // (self.patch * 2 ** len(self.widths))

    @property
    def latent_grid(self) -> tuple[int, int, int] | None:
        """``(channels, side, side)`` of a spatial latent, ``None`` for a latent vector."""
        return (self.latent_channels, self.coarse_size, self.coarse_size) if self.latent_channels else None

    @classmethod
    def grid_latent_dim(cls, latent_channels: int, image_size: int, patch: int, levels: int) -> int:
        """``latent_dim`` of a spatial latent: ``latent_channels * (image_size / (patch * 2^levels))^2``."""
        return latent_channels * (image_size // (patch * 2**levels)) ** 2

    @property
    def decoder_channels(self) -> tuple[int, tuple[int, ...]]:
        """``(coarse map channels, channels after each up-block coarse -> fine)``."""
        coarse = self.coarse_channels or self.widths[-1]
        ups = self.decoder_widths or tuple(self.widths[-2::-1]) + (self.widths[0],)
        return coarse, ups

    @property
    def off_diagonals(self) -> int:
        return off_diagonal_count(self.neighbourhood)

    @property
    def covariance_channels(self) -> int:
        """Output channels of the covariance decoder: ``1`` (diagonal) or ``1 + F`` (covar)."""
        return 1 if self.covariance_kind == "diagonal" else 1 + self.off_diagonals


class ResidualBlock(nn.Module):
    """conv 3x3 -> resize -> ReLU conv 3x3 -> conv 3x3, plus a resized 1x1-conv skip; ReLU; dropout.

    ``direction="down"``: the first conv has stride 2 (the resize), the skip is a 2x2 average pool.
    ``direction="up"``: bilinear x2 up-sampling after the first conv, bilinear up-sampling of the skip.
    ``direction="same"``: no resize. (A 1x1 conv commutes with both resizes, so the skip is resized at the cheaper
    resolution.) With ``batch_norm`` every 3x3 conv is followed by batch normalisation.
    """

    def __init__(self, in_channels: int, out_channels: int, direction: str, dropout: float = 0.0,
                 batch_norm: bool = True) -> None:
        super().__init__()
        if direction not in ("down", "up", "same"):
            raise ValueError(f"direction must be 'down', 'up' or 'same', got {direction!r}")
        self.direction = direction
        stride = 2 if direction == "down" else 1

        def norm() -> nn.Module:
            return nn.BatchNorm2d(out_channels) if batch_norm else nn.Identity()

        self.conv_in = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1)
        self.norm_in = norm()
        self.conv_a = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.norm_a = norm()
        self.conv_b = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.norm_b = norm()
        self.skip = nn.Conv2d(in_channels, out_channels, 1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    @staticmethod
    def _upsample(x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.norm_in(self.conv_in(x)))
        if self.direction == "up":
            h = self._upsample(h)
            skip = self._upsample(self.skip(x))
        elif self.direction == "down":
            skip = self.skip(F.avg_pool2d(x, 2))
        else:
            skip = self.skip(x)
        h = self.norm_b(self.conv_b(F.relu(self.norm_a(self.conv_a(h)))))
        return self.dropout(F.relu(h + skip))


class Encoder(nn.Module):
    """``x (B,1,H,W) -> (mu, logvar)``, each ``(B, latent_dim)``.

    Stem: a 3x3 conv (``patch = 1``) or a ``patch x patch`` conv with stride ``patch``; then ``len(widths)`` blocks
    that halve the resolution and ``coarse_blocks`` that keep it; a linear head on the flattened coarse features, or
    for a spatial latent a 1x1 conv to ``2 latent_channels`` per cell (flattened channel-major).
    """

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        widths, patch = config.widths, config.patch
        self.stem = (nn.Conv2d(1, widths[0], 3, padding=1) if patch == 1
                     else nn.Conv2d(1, widths[0], patch, stride=patch))
        blocks, channels = [], widths[0]
        for width in widths:
            blocks.append(ResidualBlock(channels, width, "down", config.dropout, config.batch_norm))
            channels = width
        blocks += [ResidualBlock(channels, channels, "same", config.dropout, config.batch_norm)
                   for _ in range(config.coarse_blocks)]
        self.blocks = nn.Sequential(*blocks)
        self.grid = config.latent_grid is not None
        self.head: nn.Module = (nn.Conv2d(channels, 2 * config.latent_channels, 1) if self.grid
                                else nn.Linear(channels * config.coarse_size**2, 2 * config.latent_dim))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.blocks(F.relu(self.stem(x)))
        if self.grid:
            mu, logvar = self.head(h).chunk(2, dim=1)
            return mu.flatten(1), logvar.flatten(1)
        mu, logvar = self.head(h.flatten(1)).chunk(2, dim=1)
        return mu, logvar


class Decoder(nn.Module):
    """``z (B, latent_dim) -> (B, out_channels, H, W)``.

    A linear map to the coarse grid (a spatial latent: a 3x3 conv of the latent grid), ``coarse_blocks`` residual
    blocks, ``len(widths)`` blocks that double the resolution (bilinear), then a 3x3 conv to ``out_channels``
    (``patch = 1``) or to ``out_channels * patch^2`` sub-pixel channels rearranged into ``patch x patch`` pixel blocks
    (pixel shuffle).
    """

    def __init__(self, config: VAEConfig, out_channels: int) -> None:
        super().__init__()
        self.coarse = config.coarse_size
        self.coarse_channels, targets = config.decoder_channels
        self.patch = config.patch
        self.grid = config.latent_grid
        self.head: nn.Module = (nn.Conv2d(config.latent_channels, self.coarse_channels, 3, padding=1) if self.grid
                                else nn.Linear(config.latent_dim, self.coarse_channels * self.coarse**2))
        blocks: list[nn.Module] = [ResidualBlock(self.coarse_channels, self.coarse_channels, "same", config.dropout,
                                                 config.batch_norm) for _ in range(config.coarse_blocks)]
        channels = self.coarse_channels
        for width in targets:
            blocks.append(ResidualBlock(channels, width, "up", config.dropout, config.batch_norm))
            channels = width
        self.blocks = nn.Sequential(*blocks)
        self.out = nn.Conv2d(channels, out_channels * self.patch**2, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.grid:
            h = F.relu(self.head(z.view(z.shape[0], *self.grid)))
        else:
            h = F.relu(self.head(z)).view(z.shape[0], self.coarse_channels, self.coarse, self.coarse)
        out = self.out(self.blocks(h))
        return F.pixel_shuffle(out, self.patch) if self.patch > 1 else out


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Put ``module`` in eval mode and restore each sub-module's own training flag on exit (``module.train(flag)``
    would overwrite modules that were deliberately left in eval mode, e.g. frozen networks during stage 2)."""
    flags = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, flag in flags:
            m.training = flag


class GenerativeModel(ImageGenerator, nn.Module):
    """Encoder, mean decoder ``G`` and (unless ``identity``) covariance decoder of the structured-covariance VAE.
    ``freeze()`` (eval mode, no gradients) makes it a fixed regulariser."""

    generator_name = "the VAE"

    def __init__(self, config: VAEConfig) -> None:
        super().__init__(config)
        self.encoder = Encoder(config)
        self.mean_decoder = Decoder(config, 1)
        self.covariance_decoder = (
            None if config.covariance_kind == "identity" else Decoder(config, config.covariance_channels)
        )

    # -- the three maps -------------------------------------------------------------------------------------------
    @property
    def latent_dimension(self) -> int:
        return self.config.latent_dim

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``q(z|x) = N(mu, diag(exp(logvar)))``: ``(mu, logvar)``, each ``(B, latent_dim)``."""
        self._check_images(x)
        return self.encoder(x)

    def decode_mean(self, z: torch.Tensor) -> torch.Tensor:
        """The mean image ``G(z)``, ``(B, 1, H, W)``."""
        self._check_latent(z)
        return self.mean_decoder(z)

    def log_diagonal(self, raw: torch.Tensor) -> torch.Tensor:
        """Bounded log-diagonal ``l = l_min + (l_max - l_min) sigmoid(raw)``."""
        lo, hi = self.config.log_diag_min, self.config.log_diag_max
        return lo + (hi - lo) * torch.sigmoid(raw)

    def decode_cholesky(self, z: torch.Tensor) -> SparseCholesky:
        """The sparse Cholesky factor ``L(z)`` of the precision ``Sigma(z)^{-1} = L L^T``.

        identity: ``l = -1/2 log rho`` everywhere, no off-diagonals; diagonal: learned ``l``, zero off-diagonals;
        covar: learned ``l`` and ``L_qp = exp(l_p) a_qp``.
        """
        self._check_latent(z)
        cfg = self.config
        size, batch = cfg.image_size, z.shape[0]
        if cfg.covariance_kind == "identity":
            if cfg.identity_rho is None:
                raise ValueError("identity covariance needs identity_rho (set after stage-1 training)")
            log_diag = torch.full((batch, 1, size, size), -0.5 * math.log(cfg.identity_rho), device=z.device,
                                  dtype=z.dtype)
            off = torch.zeros((batch, cfg.off_diagonals, size, size), device=z.device, dtype=z.dtype)
            return SparseCholesky(log_diag, off, neighbourhood=cfg.neighbourhood)
        assert self.covariance_decoder is not None  # every kind but identity has one
        return self.decode_cholesky_from_channels(self.covariance_decoder(z))

    def decode_cholesky_from_channels(self, channels: torch.Tensor) -> SparseCholesky:
        """``L`` from raw covariance-decoder output ``(B, C, H, W)``: ``l = bounded(channels[:, 0])``, and for covar
        ``L_qp = exp(l_p) channels[:, 1:]`` (diagonal: zero off-diagonals)."""
        cfg = self.config
        if cfg.covariance_kind == "identity" or channels.ndim != 4 or channels.shape[1] != cfg.covariance_channels:
            raise ValueError(f"a {cfg.covariance_kind!r} model takes {cfg.covariance_channels} covariance channels, "
                             f"got shape {tuple(channels.shape)}")
        log_diag = self.log_diagonal(channels[:, :1])
        if cfg.covariance_kind == "diagonal":
            batch, _, height, width = channels.shape
            off = channels.new_zeros((batch, cfg.off_diagonals, height, width))
        else:
            off = torch.exp(log_diag) * channels[:, 1:]
        return SparseCholesky(log_diag, off, neighbourhood=cfg.neighbourhood)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """``G(mu(x))`` with the networks in eval mode (no dropout, batch-norm running statistics); every
        sub-module's training flag is restored afterwards."""
        with eval_mode(self):
            mu, _ = self.encode(x)
            return self.decode_mean(mu)

    def nll(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``-log p(x|z)`` up to ``n/2 log(2 pi)``: ``1/2 ||L^T (x - G(z))||^2 - sum(l)``, shape ``(B,)``."""
        self._check_images(x)
        return self.decode_cholesky(z).nll(x, self.decode_mean(z))


# -- files ----------------------------------------------------------------------------------------------------------
def model_file_name(kind: str) -> str:
    """The stem name a trained model of ``kind`` has inside a weights folder: ``vae_<kind>``."""
    if kind not in COVARIANCE_KINDS:
        raise ValueError(f"unknown covariance kind {kind!r}; choose one of {', '.join(COVARIANCE_KINDS)}")
    return f"vae_{kind}"


def save_generative_model(
    model: GenerativeModel,
    path_stem: str | os.PathLike,
    info: Mapping[str, Any] | None = None,
    *,
    base: str | os.PathLike | None = None,
) -> tuple[Path, Path]:
    """Write ``path_stem.safetensors`` + ``path_stem.json`` (config, ``info``: training command, seeds, final
    losses), atomically. With ``base`` (the stem of the saved stage-1 model in the same folder) the encoder and mean
    decoder are not duplicated: the file stores the covariance decoder and pins the base file by its SHA-256."""
    config = {"model": MODEL_TYPE, **model.config.to_dict()}
    prefixes = BASE_PREFIXES if base is not None else ()
    if base is not None:
        base_model_config = read_weights_json(base)["config"]
        mine = {k: v for k, v in config.items()
                if k in ("image_size", "latent_dim", "widths", "decoder_widths", "coarse_channels", "patch",
                         "latent_channels", "coarse_blocks")}
        base_config = VAEConfig.from_dict({k: v for k, v in base_model_config.items() if k != "model"}).to_dict()
        theirs = {k: base_config[k] for k in mine}
        if mine != theirs:
            raise WeightsError(f"base weights {weights_stem(base)} have architecture {theirs}, this model {mine}")
        if model.config.dropout != base_model_config.get("dropout"):
            raise WeightsError("base weights and this model differ in dropout")
    return save_weights(model, path_stem, config, info, base=base, base_prefixes=prefixes)


def model_from_weights(
    path_stem: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[GenerativeModel, dict]:
    """Rebuild a :class:`GenerativeModel` from ``path_stem`` (eval mode, frozen) and return it with its info."""

    def build(config: VAEConfig) -> GenerativeModel:
        if config.covariance_kind == "identity" and config.identity_rho is None:
            raise WeightsError(f"{weights_paths(path_stem)[1]}: an identity-covariance model needs identity_rho")
        return GenerativeModel(config)

    return generator_from_weights(path_stem, MODEL_TYPE, VAEConfig, build, device)


def load_generative_model(
    kind: str = "covar", directory: str | os.PathLike | None = None, device: str | torch.device = "cpu"
) -> GenerativeModel:
    """Load the model of covariance ``kind`` from ``directory`` (default: the bundled default weight set or its
    fallback, see :mod:`genreg_viewer.weight_sets`): ``directory/vae_<kind>.{safetensors,json}``; eval mode, frozen.
    A fresh model per call; :func:`cached_generative_model` shares one."""
    from ..weight_sets import weights_dir

    stem = (Path(directory) if directory is not None else weights_dir(model_file_name(kind))) / model_file_name(kind)
    folder = stem.parent
    if not weights_exist(stem):
        raise WeightsError(
            f"no {kind!r} VAE weights in {folder} (expected {stem.name}.safetensors and {stem.name}.json); "
            f"train them with 'genreg train vae' / 'genreg train covariance'"
        )
    model, _ = model_from_weights(stem, device)
    if model.config.covariance_kind != kind:
        raise WeightsError(f"{stem}.json holds a {model.config.covariance_kind!r} model, not {kind!r}")
    return model


def cached_generative_model(
    kind: str, directory: str | os.PathLike, device: str | torch.device = "cpu"
) -> GenerativeModel:
    """:func:`load_generative_model` through the process-wide network cache (:mod:`genreg_viewer.models.cache`):
    loaded once per file version (its base file's included) and device under the cache's lock, loaded again when a
    weights file is rewritten; shared between callers, who must not modify it."""
    from .cache import cached_model

    stem = Path(directory) / model_file_name(kind)
    if not weights_exist(stem):  # the usual message, with the commands that train the model
        return load_generative_model(kind, directory, device)
    return cached_model(stem, device, f"vae:{kind}", lambda: load_generative_model(kind, directory, device))


def bundled_model_available(kind: str, directory: str | os.PathLike | None = None) -> tuple[bool, str]:
    """``(True, "")`` when the weights of ``kind`` are present (with their base file) in ``directory`` (default: the
    set availability checks look in, :func:`~genreg_viewer.weight_sets.availability_weight_set`, or its fallback),
    else ``(False, why)``."""
    from ..weight_sets import availability_weight_set, weights_dir

    try:
        name = model_file_name(kind)
    except ValueError as exc:
        return False, str(exc)
    folder = Path(directory) if directory is not None else weights_dir(name, availability_weight_set(), record=False)
    stem = folder / name
    if not weights_exist(stem):
        return False, f"no bundled {kind!r} VAE weights ({stem.name}.safetensors/.json) in {folder}"
    try:
        document = read_weights_json(stem)
    except WeightsError as exc:
        return False, str(exc)
    base = document.get("base")
    if isinstance(base, dict) and not weights_exist(folder / str(base.get("stem", ""))):
        return False, f"{stem.name} needs its base weights {base.get('stem')!r}, missing from {folder}"
    return True, ""


__all__ = [
    "BASE_PREFIXES",
    "COVARIANCE_KINDS",
    "PAPER_COARSE_CHANNELS",
    "PAPER_DECODER_WIDTHS",
    "PAPER_DROPOUT",
    "PAPER_PATCH",
    "PAPER_WIDTHS",
    "SLIM_PATCH",
    "SLIM_WIDTHS",
    "GenerativeModel",
    "VAEConfig",
    "WeightsError",
    "bundled_model_available",
    "cached_generative_model",
    "eval_mode",
    "load_generative_model",
    "model_file_name",
    "model_from_weights",
    "off_diagonal_count",
    "save_generative_model",
]
