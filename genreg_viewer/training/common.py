"""Pieces shared by the trainers (VAE, flow, denoiser, variational network, educated DIP).

Training images are synthetic knee phantoms with seeds below :data:`HELD_OUT_SEED` (the held-out evaluation images
used by tests and benchmarks start there). The step-budget trainers (:func:`train_steps`: denoiser, variational
network, educated DIP, flow) run for a number of steps or until a wall-clock budget is spent, whichever comes first,
with a linear warm-up and a cosine learning-rate decay over the planned steps.
"""

from __future__ import annotations

import math
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

#: phantom seeds >= this are held out for evaluation; training uses seeds below it
HELD_OUT_SEED = 1_000_000


# ------------------------------------------------------------------------------------------------------------ data
def phantom_images(count: int, first_seed: int, size: int = 128, device: torch.device | str = "cpu") -> torch.Tensor:
    """``count`` phantoms ``(count, 1, size, size)`` float32 with seeds ``first_seed, first_seed + 1, ...``."""
    from ..data.phantom import phantom_batch

    return torch.from_numpy(phantom_batch(int(count), int(first_seed), size=int(size))).unsqueeze(1).to(device)


def training_images(count: int, first_seed: int = 0, device: torch.device | str = "cpu") -> torch.Tensor:
    """Training phantoms (128x128); refuses seeds that reach into the held-out range."""
    if count < 1:
        raise ValueError("the training set needs at least one image")
    if first_seed < 0 or first_seed + count > HELD_OUT_SEED:
        raise ValueError(f"training phantom seeds must lie in [0, {HELD_OUT_SEED}); "
                         f"got {first_seed}..{first_seed + count - 1}")
    return phantom_images(count, first_seed, device=device)


def held_out_images(count: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The first ``count`` held-out phantoms (seeds ``HELD_OUT_SEED, HELD_OUT_SEED + 1, ...``), 128x128."""
    return phantom_images(count, HELD_OUT_SEED, device=device)


def flip_mask(count: int, generator: torch.Generator, device: torch.device | str = "cpu") -> torch.Tensor:
    """``count`` booleans, each true with probability 1/2 (drawn on the CPU from ``generator``, then moved)."""
    return (torch.rand(count, generator=generator) < 0.5).to(device)


def random_flips(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Flip each image ``(B, C, H, W)`` left-right with probability 1/2 (a mirrored knee is still a knee)."""
    flip = flip_mask(images.shape[0], generator, images.device)
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


def random_geometry_and_contrast(
    images: torch.Tensor,
    generator: torch.Generator,
    max_rotation_degrees: float = 8.0,
    scale_range: tuple[float, float] = (0.9, 1.12),
    max_shift_fraction: float = 0.05,
    gamma_range: tuple[float, float] = (0.75, 1.35),
) -> torch.Tensor:
    """Augment real slices ``(B, 1, H, W)`` in [0, 1]: per image a small random rotation, zoom and shift (bilinear
    resampling, zero outside the field of view), then a contrast change ``x -> x^gamma`` with ``log gamma``
    uniform in ``log gamma_range``; the result is rescaled so its maximum is 1 again (images stay in [0, 1], as
    preprocessed slices are). Parameters are drawn on the CPU from ``generator`` (device-independent)."""
    import torch.nn.functional as F

    batch = images.shape[0]

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(batch, generator=generator, dtype=torch.float64)

    angle = torch.deg2rad(uniform(-max_rotation_degrees, max_rotation_degrees))
    scale = torch.exp(uniform(math.log(scale_range[0]), math.log(scale_range[1])))
    shift = uniform(-2 * max_shift_fraction, 2 * max_shift_fraction), uniform(-2 * max_shift_fraction, 2 * max_shift_fraction)
    gamma = torch.exp(uniform(math.log(gamma_range[0]), math.log(gamma_range[1])))
    # output -> input sampling map: rotate, divide by the zoom, shift (normalised coordinates in [-1, 1])
    theta = torch.zeros(batch, 2, 3, dtype=torch.float64)
    theta[:, 0, 0], theta[:, 0, 1] = torch.cos(angle) / scale, -torch.sin(angle) / scale
    theta[:, 1, 0], theta[:, 1, 1] = torch.sin(angle) / scale, torch.cos(angle) / scale
    theta[:, 0, 2], theta[:, 1, 2] = shift
    grid = F.affine_grid(theta.to(images.dtype).to(images.device), list(images.shape), align_corners=False)
    warped = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False).clamp(0, 1)
    warped = warped.pow(gamma.to(images.dtype).to(images.device)[:, None, None, None])
    peak = warped.flatten(1).amax(1).clamp_min(1e-6)[:, None, None, None]
    return warped / peak


# ------------------------------------------------------------------------------------------------ run bookkeeping
def seed_everything(seed: int) -> None:
    """Seed torch's and numpy's global generators (network initialisation)."""
    torch.manual_seed(int(seed))
    np.random.seed(int(seed) % (2**32))


def log(message: str) -> None:
    print(message, file=sys.stdout, flush=True)


def command_line(argv: Sequence[str] | None, fallback: str) -> str:
    """``genreg ARGV`` for a run started from the command line (``argv`` without the program name), else
    ``fallback``; recorded in the info JSON."""
    return "genreg " + shlex.join(list(argv)) if argv is not None else fallback


def mean_psnr(estimate: torch.Tensor, truth: torch.Tensor) -> float:
    from ..metrics import psnr

    return float(psnr(estimate.detach().clamp(0, 1), truth).mean())


def start_run(config: Any) -> tuple[torch.Generator, torch.Tensor]:
    """Start a phantom trainer: ``config.check()``, seed the global generators with ``config.seed`` (network
    initialisation), and return a CPU generator seeded likewise (batches, noise) and the ``config.images`` training
    phantoms (seeds ``0 .. images-1``, on the CPU)."""
    config.check()
    seed_everything(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    log(f"generating {config.images} training phantoms ...")
    return generator, training_images(config.images, 0, "cpu")


def set_learning_rate(optimizer: torch.optim.Optimizer, value: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = value


class TrainingDiverged(RuntimeError):
    """Training produced a non-finite loss, parameter, buffer or evaluation figure; nothing is written."""


def _non_finite_tensors(module: torch.nn.Module) -> list[str]:
    tensors = [(name, t) for name, t in module.state_dict().items() if t.is_floating_point() or t.is_complex()]
    if not tensors:
        return []
    finite = torch.stack([torch.isfinite(t).all() for _, t in tensors])  # one device sync for all of them
    if bool(finite.all()):
        return []
    return [name for (name, _), ok in zip(tensors, finite.tolist()) if not ok]


def check_finite(where: str, *, loss: torch.Tensor | float | None = None, module: torch.nn.Module | None = None,
                 values: dict[str, Any] | None = None) -> None:
    """Stop training (:class:`TrainingDiverged`, one line naming ``where``) when the ``loss``, a parameter or buffer
    of ``module`` (e.g. batch-norm statistics) or one of the numbers in ``values`` (held-out figures) is NaN or
    infinite. The training loops (:func:`train_steps`, ``vae.run_epochs``) call it after every step, before
    anything is saved, so a diverged run writes no weights."""
    problem = None
    if isinstance(loss, torch.Tensor):
        loss = float(loss.detach())
    if loss is not None and not math.isfinite(loss):
        problem = f"the loss became {loss}"
    elif module is not None:
        bad = _non_finite_tensors(module)
        if bad:
            problem = f"{len(bad)} parameter tensor(s) became NaN or infinite ({', '.join(bad[:3])})"
    if problem is None and values:
        bad = [k for k, v in values.items() if isinstance(v, (int, float)) and not math.isfinite(v)]
        if bad:
            problem = f"the evaluation gave {', '.join(f'{k}={values[k]}' for k in bad[:3])}"
    if problem is not None:
        raise TrainingDiverged(f"training diverged at {where}: {problem}; lower --lr (nothing was written)")


# ------------------------------------------------------------------------------------------- step-budget training
@dataclass
class StepTrainingConfig:
    """Data, budget and optimiser of a step-budget trainer: ``images`` training phantoms (seeds ``0 .. images-1``),
    ``batch`` size, at most ``steps`` Adam steps or ``minutes`` of wall clock, the peak ``learning_rate`` and the
    ``seed``. Each trainer's config extends it (and may redeclare the defaults)."""

    images: int = 400
    batch: int = 8
    steps: int = 600
    minutes: float | None = None
    learning_rate: float = 2e-3
    seed: int = 0

    def check(self) -> None:
        """Raise ``ValueError`` for settings no trainer can use."""
        if not 1 <= self.images <= HELD_OUT_SEED:
            raise ValueError(f"images must be between 1 and {HELD_OUT_SEED} (seeds >= {HELD_OUT_SEED} are held out)")
        if self.batch < 1:
            raise ValueError("batch must be at least 1")
        if self.steps < 1 or (self.minutes is not None and self.minutes <= 0):
            raise ValueError("steps must be at least 1 and minutes positive")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise ValueError(f"learning rate must be positive, got {self.learning_rate}")


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


@dataclass
class TrainingOutcome:
    """What :func:`train_steps` did: ``steps`` taken (skipped ones included), the smoothed ``final_loss`` (``None``
    when no step succeeded), ``skipped`` non-finite steps, the logged ``curve`` ``[[step, smoothed loss], ...]`` and the
    ``budget`` (its clock keeps running: ``elapsed`` is the time since training started)."""

    steps: int
    final_loss: float | None
    budget: TrainingBudget
    skipped: int = 0
    curve: list[list[float]] = field(default_factory=list)

    @property
    def elapsed(self) -> float:
        return self.budget.elapsed


def train_steps(
    model: torch.nn.Module,
    batch_loss: Callable[[], torch.Tensor],
    *,
    steps: int,
    minutes: float | None,
    learning_rate: float,
    loss_label: str = "loss",
    loss_digits: int = 4,
    log_every: int = 20,
    smoothing: float = 0.05,
    max_grad_norm: float | None = None,
    after_step: Callable[[], None] | None = None,
    max_non_finite: int | None = None,
    log: Callable[[str], None] = log,
) -> TrainingOutcome:
    """Adam on ``model``'s parameters until ``steps`` steps or ``minutes`` are spent.

    Each step: training mode, ``loss = batch_loss()`` (on a fresh batch), learning rate from
    :meth:`TrainingBudget.learning_rate` (warm-up, cosine decay), backward, optional gradient-norm clipping to
    ``max_grad_norm``, the Adam step, ``after_step()``.
    The reported loss is the moving average ``r <- (1 - smoothing) r + smoothing loss``, logged every ``log_every``
    steps as ``step N LOSS_LABEL r elapsed Ts``. A non-finite loss raises :class:`TrainingDiverged`; with
    ``max_non_finite`` it skips the update instead (the step still counts) and more than ``max_non_finite`` of them
    raise. A non-finite parameter or buffer after a step raises (:func:`check_finite`), and so does a non-finite
    loss of the trained model (in eval mode, no gradients) on one more batch after the last step.
    """
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    budget = TrainingBudget(steps, minutes)
    outcome = TrainingOutcome(0, None, budget)
    step, running = 0, None
    while not budget.exhausted(step):
        model.train()
        loss = batch_loss()
        if not torch.isfinite(loss):
            if max_non_finite is None:
                check_finite(f"step {step + 1}", loss=loss)
            outcome.skipped += 1
            if outcome.skipped > max_non_finite:
                raise TrainingDiverged(f"training diverged: more than {max_non_finite} non-finite losses by step "
                                       f"{step + 1}; lower --lr (nothing was written)")
            step += 1
            continue
        set_learning_rate(optimizer, budget.learning_rate(learning_rate, step))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        optimizer.step()
        if after_step is not None:
            after_step()
        check_finite(f"step {step + 1}", module=model)
        running = loss.item() if running is None else (1 - smoothing) * running + smoothing * loss.item()
        step += 1
        if step % log_every == 0:
            outcome.curve.append([step, round(running, 4)])
            log(f"step {step} {loss_label} {running:.{loss_digits}f} elapsed {budget.elapsed:.0f}s")
    # the last update can break the model before any loss shows it: one more batch, without changing the model
    model.eval()
    with torch.no_grad():
        check_finite(f"the end of training (step {step})", loss=batch_loss())
    outcome.steps, outcome.final_loss = step, running
    return outcome


def run_info(method: str, config: Any, outcome: TrainingOutcome, data: str, **results: Any) -> dict[str, Any]:
    """The info JSON of a step-budget trainer: ``method``, ``training`` (the config dataclass, steps done, seconds,
    a description of the ``data``), ``final_loss`` and then ``results`` (held-out scores, ...)."""
    return {
        "method": method,
        "training": {**asdict(config), "steps_done": outcome.steps, "seconds": round(outcome.elapsed, 1),
                     "data": data},
        "final_loss": outcome.final_loss,
        **results,
    }
