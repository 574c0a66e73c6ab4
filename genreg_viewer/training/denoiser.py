"""Training the RealSN-DnCNN denoiser of PnP-ADMM (``genreg train denoiser``).

Residual learning (Zhang et al. 2017; Ryu et al. 2019): for clean patches ``x`` (of knee phantoms, or of a slice
set with ``--data``), noise levels ``s`` drawn
log-uniformly from ``[sigma_min, sigma_max]`` and ``n ~ N(0, I)``, minimise the mean of
``||D(x + s n, s) - x||^2 = ||R(x + s n, s) - s n||^2`` with Adam. Every convolution is spectrally normalised on
the fly (RealSN, one power-iteration step per forward pass on 64x64 images) and after each Adam step the raw
weights are rescaled onto the constraint (which leaves the network unchanged but keeps Adam's effective step
size from shrinking as the scale-invariant raw weights grow). Before saving, each layer's stored norm is replaced by
a bound valid on every image size (:meth:`RealSNConv2d.refresh_norm`: the larger of a 200-step power iteration on
128x128 images and the kernel-symbol bound), so the exported convolutions have operator norm <= 1.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..models.dncnn import RealSNDnCNN
from ..models.weights import save_weights, weights_paths
from ..paths import WEIGHTS_DIR
from .common import (
    StepTrainingConfig,
    finish_checkpoint,
    generator_state,
    in_chunks,
    log,
    mean_psnr,
    random_flips,
    random_geometry_and_contrast,
    run_info,
    start_run,
    step_checkpointing,
    train_steps,
)
from .distributed import BatchShare, distributed_run

DEFAULT_STEM = WEIGHTS_DIR / "dncnn"


@dataclass
class DenoiserTrainingConfig(StepTrainingConfig):
    """:class:`StepTrainingConfig` plus the network (``layers``, ``channels``), the training noise range
    ``[sigma_min, sigma_max]`` and the ``patch`` size."""

    layers: int = 6
    channels: int = 32
    sigma_min: float = 0.005
    sigma_max: float = 0.15
    patch: int = 40
    batch: int = 16
    steps: int = 2000
    learning_rate: float = 3e-3

    def check(self) -> None:
        super().check()
        if not 0 < self.sigma_min <= self.sigma_max:
            raise ValueError("need 0 < sigma_min <= sigma_max")
        if not 8 <= self.patch <= 128:
            raise ValueError("patch size must be between 8 and 128")
        if self.layers < 2 or self.channels < 1:
            raise ValueError("channels must be positive and layers >= 2")


def _random_patches(images: torch.Tensor, count: int, size: int, generator: torch.Generator,
                    augment: bool = False) -> torch.Tensor:
    """``count`` random ``size x size`` patches, each flipped with probability 1/2; with ``augment`` the images they
    are cut from first get :func:`random_geometry_and_contrast` (whole images, so that the contrast is rescaled per
    image, not per patch)."""
    index = torch.randint(images.shape[0], (count,), generator=generator)
    rows = torch.randint(images.shape[-2] - size + 1, (count,), generator=generator)
    cols = torch.randint(images.shape[-1] - size + 1, (count,), generator=generator)
    sources = random_geometry_and_contrast(images[index], generator) if augment else images[index]
    patches = torch.stack([sources[k, :, r : r + size, c : c + size] for k, (r, c) in enumerate(zip(rows, cols))])
    return random_flips(patches, generator)


def _log_uniform(count: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    u = torch.rand(count, generator=generator)
    return torch.exp(math.log(low) + u * (math.log(high) - math.log(low)))


@torch.no_grad()
def evaluate_denoiser(model: RealSNDnCNN, images: torch.Tensor, levels=(0.01, 0.025, 0.05, 0.1), seed: int = 0) -> dict:
    """Held-out PSNR (noisy and denoised) at the given noise levels."""
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    out = {}
    for level in levels:
        noisy = images + level * torch.randn(images.shape, generator=generator).to(images.device)
        denoised = in_chunks(functools.partial(model, noise_level=level), noisy)
        out[str(level)] = {"noisy_psnr": round(mean_psnr(noisy, images), 2),
                           "denoised_psnr": round(mean_psnr(denoised, images), 2)}
    return out


def train_denoiser(config: DenoiserTrainingConfig, stem: str | os.PathLike = DEFAULT_STEM,
                   device: torch.device | str = "cpu", resume: bool = False,
                   keep_checkpoint: bool = False) -> tuple[Path, Path]:
    """Train a RealSN-DnCNN and save it as ``stem.safetensors`` / ``stem.json``; returns the two paths. Under
    ``torchrun`` the global batch of ``config.batch`` patches is split over the ranks (rank 0 writes)."""
    with distributed_run(device) as context:
        context.check_batch(config.batch)
        device = context.device
        generator, data = start_run(config)
        images, validation = data.train.images, data.held_out.images.to(device)
        model = RealSNDnCNN(config.layers, config.channels).to(device)

        def batch_loss(step: int, share: BatchShare) -> torch.Tensor:
            clean = _random_patches(images, config.batch, config.patch, generator, config.augment)
            levels = _log_uniform(config.batch, config.sigma_min, config.sigma_max, generator)
            noise = torch.randn(clean.shape, generator=generator) * levels.view(-1, 1, 1, 1)
            clean, levels, noise = (share(t).to(device) for t in (clean, levels, noise))
            # loss per pixel relative to the noise variance, so that every noise level counts alike
            residual = model.residual(clean + noise, levels)
            return ((residual - noise).square().mean(dim=(1, 2, 3)) / levels.square()).mean()

        checkpointing = step_checkpointing(config, stem, resume)
        state, load_state = generator_state(generator)
        outcome = train_steps(model, batch_loss, steps=config.steps, minutes=config.minutes,
                              learning_rate=config.learning_rate, loss_label="loss(relative MSE)", log_every=100,
                              smoothing=0.02, after_step=model.rescale_weights_, context=context,
                              checkpointing=checkpointing, checkpoint_every=config.checkpoint_every, state=state,
                              load_state=load_state)
        model.eval()
        norms = model.refresh_norms((128, 128), iterations=200)
        scores = evaluate_denoiser(model, validation)
        log(f"trained {outcome.steps} steps in {outcome.elapsed:.0f}s; raw operator norms (power iteration, "
            f"certified bound) {[(round(a, 4), round(b, 4)) for a, b in norms]}")
        log(f"held-out PSNR (noisy -> denoised): {scores}")
        info = run_info(
            "RealSN-DnCNN (Ryu et al. 2019), residual learning, noise level as per-layer biases", config, outcome,
            data, f"random {config.patch}x{config.patch} patches, flips",
            raw_operator_norms_128=[round(a, 4) for a, _ in norms],
            raw_operator_norm_bounds=[round(b, 4) for _, b in norms],
            held_out_psnr=scores,
            processes=context.world_size,
        )
        model_config = {**model.config, "sigma_range": [config.sigma_min, config.sigma_max]}
        paths = weights_paths(stem)
        if context.is_main:
            paths = save_weights(model, stem, model_config, info)
            finish_checkpoint(checkpointing, context, keep_checkpoint)
        return paths
