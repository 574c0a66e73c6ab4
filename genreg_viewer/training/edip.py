"""Pretraining the educated-DIP U-Net (``genreg train edip``).

Barbano et al. (2021), "An educated warm start for deep image prior-based micro CT reconstruction": before the
per-image DIP fit, train the network on synthetic data to map the adjoint reconstruction to the ground truth,
minimising ``||f(Re(A^H y)) - x||^2`` with Adam. Here ``x`` are knee phantoms (training seeds) or the slices of a
slice set (``--data``) and, so that the warm start suits more than one acquisition, each training pair draws its
radial spoke count from :data:`SPOKE_CHOICES` and its noise level from :data:`NOISE_CHOICES` (the DIP fit afterwards
adapts the network to the actual data).
The U-Net is the one DIP uses, with a global residual connection (output = input + U-Net(input)), so that training
starts from the identity map on the adjoint.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..models.unet import DIP_CHANNELS, UNet
from ..models.weights import save_weights, weights_paths
from ..paths import WEIGHTS_DIR
from ..physics import MRIOperator, add_kspace_noise, radial_mask
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

DEFAULT_STEM = WEIGHTS_DIR / "edip"
SPOKE_CHOICES = (15, 25, 35, 45, 65, 85, 125)
NOISE_CHOICES = (0.0125, 0.025, 0.05)


@dataclass
class EdipTrainingConfig(StepTrainingConfig):
    """:class:`StepTrainingConfig` plus the U-Net ``channels`` and the radial ``spokes`` and ``noise`` levels drawn
    per training image."""

    channels: tuple[int, ...] = DIP_CHANNELS
    spokes: tuple[int, ...] = SPOKE_CHOICES
    noise: tuple[float, ...] = NOISE_CHOICES

    def check(self) -> None:
        super().check()
        if not self.spokes or min(self.spokes) < 1:
            raise ValueError("spoke counts must be positive")
        if not self.noise or min(self.noise) < 0:
            raise ValueError("noise levels must be non-negative")


def adjoint_inputs(truth: torch.Tensor, operators: list[MRIOperator], sigmas: list[float], seed: int) -> torch.Tensor:
    """``Re(A_i^H (A_i x_i + n_i))`` for each image with its own operator and noise level."""
    out = []
    for i, (operator, sigma) in enumerate(zip(operators, sigmas)):
        x = truth[i : i + 1]
        y = add_kspace_noise(operator.fft(x), operator.sampling.to(x.device), sigma, seed + i)
        out.append(operator.adjoint_real(y))
    return torch.cat(out)


def train_edip(config: EdipTrainingConfig, stem: str | os.PathLike = DEFAULT_STEM,
               device: torch.device | str = "cpu", resume: bool = False,
               keep_checkpoint: bool = False) -> tuple[Path, Path]:
    """Pretrain the eDIP U-Net and save it; returns the file paths. Under ``torchrun`` the global batch of
    ``config.batch`` images is split over the ranks (rank 0 writes)."""
    with distributed_run(device) as context:
        context.check_batch(config.batch)
        device = context.device
        generator, data = start_run(config)
        images = data.train.images
        operators = {s: MRIOperator(radial_mask(s), device=device) for s in config.spokes}
        model = UNet(1, tuple(config.channels), residual=True).to(device)

        def batch_loss(step: int, share: BatchShare) -> torch.Tensor:
            index = torch.randint(images.shape[0], (config.batch,), generator=generator)
            truth = augment_batch(images[index], generator, augment=config.augment).to(device)
            spoke_index = torch.randint(len(config.spokes), (config.batch,), generator=generator)
            noise_index = torch.randint(len(config.noise), (config.batch,), generator=generator)
            spokes = [config.spokes[int(i)] for i in spoke_index]
            sigmas = [config.noise[int(i)] for i in noise_index]
            seed = int(torch.randint(2**30, (1,), generator=generator))
            inputs = adjoint_inputs(truth, [operators[s] for s in spokes], sigmas, seed)
            inputs, truth = share(inputs), share(truth)
            return (model(inputs) - truth).square().mean()

        checkpointing = step_checkpointing(config, stem, resume)
        state, load_state = generator_state(generator)
        outcome = train_steps(model, batch_loss, steps=config.steps, minutes=config.minutes,
                              learning_rate=config.learning_rate, loss_label="loss(MSE)", loss_digits=5,
                              context=context, checkpointing=checkpointing, checkpoint_every=config.checkpoint_every,
                              state=state, load_state=load_state)
        model.eval()
        validation = data.held_out.images.to(device)
        scores = {}
        with torch.no_grad():
            for spokes in (25, 125):
                operator = MRIOperator(radial_mask(spokes), device=device)
                inputs = adjoint_inputs(validation, [operator] * len(validation), [0.05] * len(validation), 999)
                network = in_chunks(model, inputs)
                scores[f"radial{spokes}-sigma0.05"] = {"adjoint_psnr": round(mean_psnr(inputs, validation), 2),
                                                      "network_psnr": round(mean_psnr(network, validation), 2)}
        log(f"trained {outcome.steps} steps in {outcome.elapsed:.0f}s; held-out PSNR {scores}")
        info = run_info(
            "educated DIP warm start (Barbano et al. 2021): U-Net mapping adjoint reconstructions to ground truth",
            config, outcome, data, "flips, radial masks and noise drawn per image",
            held_out_psnr=scores,
            processes=context.world_size,
        )
        paths = weights_paths(stem)
        if context.is_main:
            paths = save_weights(model, stem, model.config, info)
            finish_checkpoint(checkpointing, context, keep_checkpoint)
        return paths
