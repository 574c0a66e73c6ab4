"""Shared pieces of the learned-baseline trainers (denoiser, variational network, educated DIP).

Training images are synthetic knee phantoms with seeds below :data:`HELD_OUT_SEED` (the held-out evaluation images
used by tests and benchmarks start there). Every trainer runs for a number of steps or until a wall-clock budget is
spent, whichever comes first, with a cosine learning-rate decay over the planned steps.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch

#: phantom seeds >= this are held out for evaluation; training uses seeds below it
HELD_OUT_SEED = 1_000_000


def phantom_images(count: int, first_seed: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """``count`` phantoms ``(count, 1, 128, 128)`` float32 with seeds ``first_seed, first_seed + 1, ...``."""
    from ..data.phantom import phantom_batch

    return torch.from_numpy(phantom_batch(int(count), int(first_seed), size=128)).unsqueeze(1).to(device)


def training_images(count: int, first_seed: int = 0, device: torch.device | str = "cpu") -> torch.Tensor:
    """Training phantoms; refuses seeds that reach into the held-out range."""
    if count < 1:
        raise ValueError("the training set needs at least one image")
    if first_seed < 0 or first_seed + count > HELD_OUT_SEED:
        raise ValueError(f"training phantom seeds must lie in [0, {HELD_OUT_SEED}); "
                         f"got {first_seed}..{first_seed + count - 1}")
    return phantom_images(count, first_seed, device)


def held_out_images(count: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The first ``count`` held-out phantoms (seeds ``HELD_OUT_SEED, HELD_OUT_SEED + 1, ...``)."""
    return phantom_images(count, HELD_OUT_SEED, device)


def random_flips(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Flip each image left-right with probability 1/2 (a mirrored knee is still a knee)."""
    flip = torch.rand(images.shape[0], generator=generator) < 0.5
    out = images.clone()
    out[flip] = out[flip].flip(-1)
    return out


@dataclass
class TrainingBudget:
    """Stop after ``steps`` optimiser steps or ``minutes`` of wall-clock time (``None``: no time limit)."""

    steps: int
    minutes: float | None = None

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError("training needs at least one step")
        if self.minutes is not None and self.minutes <= 0:
            raise ValueError("the time budget must be positive")
        self.start = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def exhausted(self, step: int) -> bool:
        return step >= self.steps or (self.minutes is not None and self.elapsed >= 60 * self.minutes)

    def learning_rate(self, base: float, step: int, warmup: int = 20) -> float:
        """Linear warm-up over ``warmup`` steps, then cosine decay to ``base / 20`` at the planned end (by step count or
        by time, whichever is further along)."""
        progress = step / self.steps
        if self.minutes is not None:
            progress = max(progress, self.elapsed / (60 * self.minutes))
        progress = min(progress, 1.0)
        scale = 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress))
        return base * min(1.0, (step + 1) / warmup) * scale


def set_learning_rate(optimizer: torch.optim.Optimizer, value: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = value


def log(message: str) -> None:
    print(message, file=sys.stdout, flush=True)


def mean_psnr(estimate: torch.Tensor, truth: torch.Tensor) -> float:
    from ..metrics import psnr

    return float(psnr(estimate.detach().clamp(0, 1), truth).mean())


def seed_everything(seed: int) -> None:
    """Seed torch's and numpy's global generators (network initialisation)."""
    torch.manual_seed(int(seed))
    np.random.seed(int(seed) % (2**32))
