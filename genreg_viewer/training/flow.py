"""Training the normalising-flow prior by exact maximum likelihood (``genreg train flow``).

Loss (per image, in bits per dimension; Dinh et al. 2017, Kingma & Dhariwal 2018)::

    bpd(x~) = (-log p(x~) + D log 256) / (D log 2),      x~ = (floor(256 x) + u) / 256,  u ~ U[0, 1)^D,

the dequantised code length of the 8-bit version of each training image ``x`` (``D = H W``; ``log p`` from
:meth:`genreg_viewer.models.flow.Flow.log_prob`). Minimising its mean maximises a lower bound on the discrete
log-likelihood (Theis et al. 2016). Adam with linear warm-up and cosine decay over the planned steps (or the wall-clock
budget), gradient-norm clipping, random left-right flips (``augment``: also a small rotation/zoom/shift and contrast
change); the actnorm layers are initialised from the first batch. Training phantoms use seeds ``0 .. images-1``; the
held-out figures use seeds from 1,000,000; ``data`` / ``held_out`` choose a slice set instead
(:func:`genreg_viewer.training.common.load_training_data`).
"""

from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import torch

from ..models.flow import DEFAULT_BINS, Flow, FlowConfig, bundled_flow_stem, dequantize, save_flow
from ..models.weights import weights_paths
from .common import (
    HELD_OUT_SEED,  # noqa: F401 (re-exported)
    StepTrainingConfig,
    augment_batch,
    command_line,
    describe_images,
    finish_checkpoint,
    load_training_data,
    log as common_log,
    phantom_images,  # noqa: F401 (tests make the held-out phantoms with it)
    seed_everything,
    step_checkpointing,
    train_steps,
)
from .distributed import BatchShare, distributed_run

#: seed of the dequantisation noise of the held-out evaluation (fixed, so numbers are comparable between runs)
EVALUATION_SEED = 4321


@dataclass
class FlowTrainingSettings(StepTrainingConfig):
    """Data, optimiser and budget of :func:`train_flow` (``images``, ``batch``, ``steps``, ``minutes``,
    ``learning_rate``, ``seed``, ``data``, ``held_out``, ``augment`` as in :class:`StepTrainingConfig`)."""

    #: held-out phantoms for the final bits/dim (seeds from 1,000,000) with phantom data and no ``held_out``
    DEFAULT_HELD_OUT: ClassVar[int] = 32

    images: int = 2000
    batch: int = 16
    steps: int = 1000
    learning_rate: float = 3e-3
    bins: int = DEFAULT_BINS
    flips: bool = True
    max_grad_norm: float = 50.0
    log_every: int = 25

    def check(self) -> None:
        super().check()
        if self.bins < 2 or self.max_grad_norm <= 0 or self.log_every < 1:
            raise ValueError("bins >= 2, max_grad_norm > 0 and log_every >= 1 are required")


@torch.no_grad()
def evaluate_bits_per_dim(model: Flow, images: torch.Tensor, bins: int = DEFAULT_BINS, seed: int = EVALUATION_SEED,
                          batch_size: int = 16) -> float:
    """Mean bits/dim of ``images`` (dequantised with the fixed ``seed``), eval mode; on the model's device."""
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    total = 0.0
    try:
        for start in range(0, images.shape[0], batch_size):
            x = dequantize(images[start:start + batch_size], generator, bins).to(device)
            total += float(model.bits_per_dim(x, bins).sum())
    finally:
        model.train(was_training)
    return total / images.shape[0]


def train_flow(
    config: FlowConfig,
    settings: FlowTrainingSettings,
    stem: str | os.PathLike | None = None,
    device: torch.device | str = "cpu",
    argv: Sequence[str] | None = None,
    log: Callable[[str], None] = common_log,
    resume: bool = False,
    keep_checkpoint: bool = False,
) -> tuple[Path, Path]:
    """Train a :class:`Flow` of ``config`` on ``settings.data`` (default phantoms) and save it to ``stem`` (default
    the bundled ``resources/weights/flow``); returns the ``(safetensors, json)`` paths. Under ``torchrun`` the
    global batch of ``settings.batch`` images is split over the ranks (rank 0 writes)."""
    config.validate()
    settings.check()
    stem = Path(stem) if stem is not None else bundled_flow_stem()
    with distributed_run(device) as context:
        context.check_batch(settings.batch)
        device = context.device
        seed_everything(settings.seed)
        generator = torch.Generator().manual_seed(settings.seed)
        data = load_training_data(settings, config.image_size, report=log)
        images, held_out = data.train.images, data.held_out.images

        model = Flow(config).to(device)
        first = images[torch.randperm(images.shape[0], generator=generator)[: max(settings.batch, 64)]]
        model.initialize(dequantize(first, generator, settings.bins).to(device))
        order: dict[str, Any] = {"order": torch.randperm(images.shape[0], generator=generator), "cursor": 0}

        def batch_loss(step: int, share: BatchShare) -> torch.Tensor:
            if order["cursor"] + settings.batch > order["order"].numel():
                order["order"], order["cursor"] = torch.randperm(images.shape[0], generator=generator), 0
            batch = images[order["order"][order["cursor"]:order["cursor"] + settings.batch]]
            order["cursor"] += settings.batch
            batch = augment_batch(batch, generator, flips=settings.flips, augment=settings.augment)
            x = share(dequantize(batch, generator, settings.bins)).to(device)
            return model.bits_per_dim(x, settings.bins).mean()

        def state() -> dict[str, Any]:
            return {"generator": generator.get_state(), **order}

        def load_state(saved: dict[str, Any]) -> None:
            generator.set_state(saved["generator"])
            order["order"], order["cursor"] = saved["order"], int(saved["cursor"])

        checkpointing = step_checkpointing(settings, stem, resume)
        outcome = train_steps(model, batch_loss, steps=settings.steps, minutes=settings.minutes,
                              learning_rate=settings.learning_rate, loss_label="train bits/dim",
                              log_every=settings.log_every, max_grad_norm=settings.max_grad_norm, max_non_finite=20,
                              context=context, checkpointing=checkpointing,
                              checkpoint_every=settings.checkpoint_every, state=state, load_state=load_state)
        model.eval()
        held_bpd = evaluate_bits_per_dim(model, held_out, settings.bins)
        held_kind = "phantoms" if data.held_out.phantoms else "images"
        held_description = describe_images(data.held_out, phantoms="phantoms seeds")
        noise = torch.rand(held_out.shape, generator=torch.Generator().manual_seed(EVALUATION_SEED + 1))
        noise_bpd = evaluate_bits_per_dim(model, noise, settings.bins)
        log(f"trained {outcome.steps} steps in {outcome.elapsed:.0f}s: held-out {held_kind} {held_bpd:.4f} bits/dim, "
            f"uniform noise {noise_bpd:.4f} bits/dim")
        info = {
            "method": "multi-scale affine-coupling flow (RealNVP/Glow) trained by exact likelihood; prior of "
                      "Asim et al. 2020",
            "command": command_line(argv, "genreg_viewer.training.flow.train_flow"),
            "data": (f"{'synthetic ' if data.phantoms else ''}{data.describe()}, "
                     f"{config.image_size}x{config.image_size}"),
            **data.info(),
            "settings": asdict(settings),
            "steps": outcome.steps,
            "skipped_steps": outcome.skipped,
            "seconds": round(outcome.elapsed, 1),
            "device": str(device),
            "processes": context.world_size,
            "threads": torch.get_num_threads(),
            "parameters": sum(p.numel() for p in model.parameters()),
            "train_bits_per_dim": round(outcome.final_loss, 4) if outcome.final_loss is not None else None,
            "held_out_bits_per_dim": round(held_bpd, 4),
            "held_out": held_description,
            "uniform_noise_bits_per_dim": round(noise_bpd, 4),
            "curve": outcome.curve,
            "torch": torch.__version__,
            "python": sys.version.split()[0],
        }
        paths = weights_paths(stem)
        if context.is_main:
            paths = save_flow(model.cpu(), stem, info)
            finish_checkpoint(checkpointing, context, keep_checkpoint)
        return paths
