"""Supervised training of a variational network for one sampling setting (``genreg train varnet``).

Hammernik et al. (2018): minimise the mean squared error ``1/2 ||x_T(y) - x||^2`` between the last stage's output
and the ground truth over training pairs ``(x, y = M F x + n)``, with Adam. Here ``x`` are knee phantoms (training
seeds) or the slices of a slice set (``--data``), the mask is fixed (the setting) and the noise is redrawn every
step. The paper used Adam with learning rate 1e-4 and many epochs on a GPU; on a CPU budget we use 5e-3 (batch 2)
with warm-up and cosine decay, which reaches most of the gain within a few hundred steps
(resources/weights/LEARNED.md).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..defaults import DEFAULT_MASK_SPEC, IMAGE_SHAPE
from ..models.varnet import VariationalNetwork
from ..models.weights import save_weights, weights_paths
from ..paths import WEIGHTS_DIR
from ..physics import MRIOperator, add_kspace_noise, mask_fingerprint, mask_from_spec
from .common import (
    StepTrainingConfig,
    augment_batch,
    finish_checkpoint,
    generator_state,
    in_chunks,
    log,
    mean_psnr,
    run_info,
    start_run,
    step_checkpointing,
    train_steps,
)
from .distributed import BatchShare, distributed_run


def setting_name(mask_spec: str, sigma: float) -> str:
    """``radial:25`` + ``0.05`` -> ``radial25-sigma0.05`` (also the weights file name after ``varnet-``)."""
    slug = re.sub(r"[^A-Za-z0-9.]+", "", str(mask_spec).replace(":", "")) or "mask"
    return f"{slug}-sigma{sigma:g}"


def default_stem(mask_spec: str, sigma: float) -> Path:
    return WEIGHTS_DIR / f"varnet-{setting_name(mask_spec, sigma)}"


@dataclass
class VarnetTrainingConfig(StepTrainingConfig):
    """:class:`StepTrainingConfig` plus the setting (``mask`` spec, k-space ``noise`` sigma) and the network
    (``stages``, ``filters`` of ``kernel_size``, ``rbf_count`` activations over ``[-rbf_extent, rbf_extent]``)."""

    mask: str = DEFAULT_MASK_SPEC
    noise: float = 0.05
    stages: int = 10
    filters: int = 24
    kernel_size: int = 11
    rbf_count: int = 31
    rbf_extent: float = 1.0
    batch: int = 2
    steps: int = 300
    learning_rate: float = 5e-3

    def check(self) -> None:
        super().check()
        if self.noise < 0 or not np.isfinite(self.noise):
            raise ValueError(f"noise sigma must be a finite non-negative number, got {self.noise}")
        if self.stages < 1:
            raise ValueError("stages must be positive")


def _measure(images: torch.Tensor, operator: MRIOperator, sigma: float, seed: int) -> torch.Tensor:
    return add_kspace_noise(operator.fft(images), operator.sampling.to(images.device), sigma, seed)


@torch.no_grad()
def evaluate_varnet(model: VariationalNetwork, images: torch.Tensor, operator: MRIOperator, sigma: float,
                    seed: int = 12345) -> dict:
    """Held-out PSNR of the adjoint and of the network output."""
    model.eval()
    y = _measure(images, operator, sigma, seed)
    return {"adjoint_psnr": round(mean_psnr(operator.adjoint_real(y), images), 2),
            "varnet_psnr": round(mean_psnr(in_chunks(lambda chunk: model(chunk, operator), y), images), 2)}


def train_varnet(config: VarnetTrainingConfig, stem: str | os.PathLike | None = None,
                 device: torch.device | str = "cpu", resume: bool = False,
                 keep_checkpoint: bool = False) -> tuple[Path, Path]:
    """Train a variational network for ``config.mask`` / ``config.noise`` and save it; returns the file paths. Under
    ``torchrun`` the global batch of ``config.batch`` images is split over the ranks (rank 0 writes)."""
    mask = mask_from_spec(config.mask, IMAGE_SHAPE)
    stem = default_stem(config.mask, config.noise) if stem is None else stem
    with distributed_run(device) as context:
        context.check_batch(config.batch)
        device = context.device
        generator, data = start_run(config)
        operator = MRIOperator(mask, device=device)
        images, validation = data.train.images, data.held_out.images.to(device)
        model = VariationalNetwork(config.stages, config.filters, config.kernel_size, config.rbf_count,
                                   config.rbf_extent, seed=config.seed).to(device)

        def batch_loss(step: int, share: BatchShare) -> torch.Tensor:
            index = torch.randint(images.shape[0], (config.batch,), generator=generator)
            truth = augment_batch(images[index], generator, augment=config.augment).to(device)
            noise_seed = int(torch.randint(2**31 - 1, (1,), generator=generator))
            y = _measure(truth, operator, config.noise, noise_seed)  # the global batch's noise, then this rank's part
            truth, y = share(truth), share(y)
            return 0.5 * (model(y, operator) - truth).square().flatten(1).sum(1).mean()

        checkpointing = step_checkpointing(config, stem, resume)
        state, load_state = generator_state(generator)
        outcome = train_steps(model, batch_loss, steps=config.steps, minutes=config.minutes,
                              learning_rate=config.learning_rate, loss_digits=3, max_grad_norm=10.0, context=context,
                              checkpointing=checkpointing, checkpoint_every=config.checkpoint_every, state=state,
                              load_state=load_state)
        scores = evaluate_varnet(model, validation, operator, config.noise)
        log(f"trained {outcome.steps} steps in {outcome.elapsed:.0f}s; held-out PSNR {scores}")
        model_config = {
            **model.config,
            "setting": setting_name(config.mask, config.noise),
            "mask_spec": config.mask,
            "mask_fingerprint": mask_fingerprint(mask),
            "sampling_fraction": round(float(mask.mean()), 6),
            "noise_sigma": float(config.noise),
        }
        info = run_info(
            "variational network (Hammernik et al. 2018), real images, supervised on one setting", config, outcome,
            data, "flips, fresh noise every step",
            held_out_psnr=scores,
            data_weights=[round(s.data_weight.item(), 4) for s in model.stages],
            processes=context.world_size,
        )
        paths = weights_paths(stem)
        if context.is_main:
            paths = save_weights(model, stem, model_config, info)
            finish_checkpoint(checkpointing, context, keep_checkpoint)
        return paths
