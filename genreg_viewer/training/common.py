"""Pieces shared by the trainers (VAE, flow, denoiser, variational network, educated DIP).

Training data (:func:`load_image_set`, :func:`training_and_held_out`, :func:`load_training_data`) is written
``phantom:N[:SEED]`` (synthetic knee phantoms; training seeds stay below :data:`HELD_OUT_SEED`, where the held-out
evaluation images used by tests and benchmarks start) or the path of a slice set ``.h5`` from
``genreg dataset build`` (real slices); every ``genreg train`` kind takes it the same way (``--data``, ``--held-out``,
``--augment``).

The step-budget trainers (:func:`train_steps`: denoiser, variational network, educated DIP, flow) run the one
training loop (:class:`genreg_viewer.training.loop.Trainer`, shared with the VAE) for a number of steps or until a
wall-clock budget is spent, whichever comes first, with a linear warm-up and a cosine learning-rate decay over the
planned steps, a checkpoint every ``checkpoint_every`` steps (``--resume``) and, under ``torchrun``, data-parallel
steps over the ranks (:mod:`genreg_viewer.training.distributed`).
"""

from __future__ import annotations

import inspect
import math
import os
import shlex
from dataclasses import asdict, dataclass
from typing import Any, Callable, ClassVar, Sequence

import numpy as np
import torch

from ..data import limits
from ..data.specs import parse_phantom_spec
from ..defaults import IMAGE_SIZE
from .distributed import DistributedContext, logger
from .loop import (  # noqa: F401 (re-exported: the trainers and tests import them from here)
    Checkpointing,
    LoopOutcome,
    Plan,
    Schedule,
    TrainingDiverged,
    check_finite,
    ensure_log_handler,
    set_learning_rate,
    LoopOptions,
    Trainer,
    TrainingTask,
)

#: phantom seeds >= this are held out for evaluation; training uses seeds below it
HELD_OUT_SEED = 1_000_000


# ------------------------------------------------------------------------------------------------------------ data
def phantom_images(count: int, first_seed: int, size: int = IMAGE_SIZE,
                   device: torch.device | str = "cpu") -> torch.Tensor:
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


@dataclass
class ImageSet:
    """Images ``(N, 1, H, W)`` float32 in [0, 1] and a description of where they came from (for the info JSON)."""

    images: torch.Tensor
    spec: str

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def phantoms(self) -> bool:
        """Whether these are synthetic phantoms (``phantom:N[:SEED]``)."""
        return parse_phantom_spec(self.spec) is not None


def _check_phantom_count(spec: str | None, size: int) -> None:
    """Refuse ``phantom:N`` whose images would exceed the limits of :mod:`genreg_viewer.data.limits` (a
    ``DataError`` naming ``spec``), before any is made."""
    phantom = parse_phantom_spec(spec) if spec is not None else None
    if phantom is not None:
        limits.check_images(phantom[0], (size, size), str(spec))


def load_image_set(spec: str, size: int = IMAGE_SIZE) -> ImageSet:
    """``phantom:N[:SEED]`` (synthetic knee phantoms with seeds ``SEED .. SEED+N-1``) or a slice-set ``.h5`` file
    from ``genreg dataset build``; every image must be ``size x size``."""
    phantom = parse_phantom_spec(spec)
    if phantom is not None:
        from ..data.phantom import phantom_batch

        _check_phantom_count(spec, size)
        array = phantom_batch(phantom[0], phantom[1], size=size)
    else:
        from ..data.dataset import load_slice_set

        array = load_slice_set(spec)
    if array.ndim != 3 or array.shape[0] == 0 or tuple(array.shape[1:]) != (size, size):
        raise ValueError(f"{spec}: expected a non-empty stack of {size}x{size} images, got shape {tuple(array.shape)}")
    return ImageSet(torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).unsqueeze(1), spec)


def training_and_held_out(data: str, held_out: str | None, held_out_count: int = 128,
                          size: int = IMAGE_SIZE) -> tuple[ImageSet, ImageSet]:
    """The training images and the held-out images.

    Phantoms: training seeds must stay below :data:`HELD_OUT_SEED`; the default held-out set is
    ``phantom:{held_out_count}:{HELD_OUT_SEED}``. A slice set without ``--held-out``: its last whole volumes (about
    5% of the slices) are held out, so no volume is in both sets.
    """
    phantom = parse_phantom_spec(data)
    if phantom is not None and phantom[0] + phantom[1] > HELD_OUT_SEED:
        raise ValueError(f"training phantom seeds must stay below {HELD_OUT_SEED} (held out for evaluation); "
                         f"got {data!r}")
    for spec in (data, held_out):  # both bounded before either is made
        _check_phantom_count(spec, size)
    if held_out is not None:
        return load_image_set(data, size), load_image_set(held_out, size)
    if phantom is not None:
        return load_image_set(data, size), load_image_set(f"phantom:{held_out_count}:{HELD_OUT_SEED}", size)
    from ..data.dataset import load_slice_set_sources

    everything = load_image_set(data, size)
    volumes = [volume for volume, _ in load_slice_set_sources(data)]
    order = list(dict.fromkeys(volumes))
    if len(order) < 2:
        raise ValueError(f"{data} holds a single volume; pass --held-out with a separate slice set")
    held_volumes: set[str] = set()
    for volume in reversed(order):
        if sum(v in held_volumes for v in volumes) >= max(1, len(volumes) // 20) or len(held_volumes) == len(order) - 1:
            break
        held_volumes.add(volume)
    held = torch.tensor([v in held_volumes for v in volumes])
    return (
        ImageSet(everything.images[~held], f"{data} minus {len(held_volumes)} held-out volumes"),
        ImageSet(everything.images[held], f"{data}: last {len(held_volumes)} volumes"),
    )


def held_out_spec(held_out: int | str | None) -> str | None:
    """A ``--held-out`` value as a DATA spec: ``N`` (an int or a string of digits) means ``N`` held-out phantoms,
    ``phantom:N:HELD_OUT_SEED``; a string is a DATA spec; ``None`` stays ``None`` (the default held-out set)."""
    if held_out is None:
        return None
    if isinstance(held_out, bool):
        raise ValueError(f"--held-out must be N, phantom:N[:SEED] or a slice-set .h5 file, got {held_out!r}")
    if isinstance(held_out, (int, np.integer)) or str(held_out).strip().isdigit():
        count = int(str(held_out).strip())
        if count < 1:
            raise ValueError(f"--held-out needs at least one image, got {held_out!r}")
        return f"phantom:{count}:{HELD_OUT_SEED}"
    if not str(held_out).strip():
        raise ValueError("--held-out is empty")
    return str(held_out)


def describe_images(image_set: ImageSet, phantoms: str = "knee phantoms, seeds") -> str:
    """``knee phantoms, seeds S..S+N-1`` for ``phantom:N:S`` (how the bundled weights' info has always named them;
    ``phantoms`` replaces the words before the seeds), else ``SPEC (N images)``."""
    phantom = parse_phantom_spec(image_set.spec)
    if phantom is not None:
        return f"{phantoms} {phantom[1]}..{phantom[0] + phantom[1] - 1}"
    return f"{image_set.spec} ({len(image_set)} images)"


@dataclass
class TrainingData:
    """The ``train`` and ``held_out`` images of a run, the training DATA ``spec`` as asked for and whether the
    batches get :func:`random_geometry_and_contrast` (``augment``) on top of the flips."""

    spec: str
    train: ImageSet
    held_out: ImageSet
    augment: bool = False

    @property
    def phantoms(self) -> bool:
        """Whether the training images are phantoms (``phantom:N[:SEED]``)."""
        return self.train.phantoms

    def describe(self, details: str = "") -> str:
        """The info JSON's ``data``: :func:`describe_images` of the training set, then ``details`` (patches, flips,
        noise, ...) and the augmentation when it is on."""
        parts = [describe_images(self.train)] + ([details] if details else [])
        if self.augment:
            parts.append("random rotation/zoom/shift and contrast (gamma) per image")
        return ", ".join(parts)

    def info(self) -> dict[str, Any]:
        """What the info JSON records besides :meth:`describe`: the specs and the image counts."""
        return {"data_spec": self.spec, "training_images": len(self.train),
                "held_out_data": self.held_out.spec, "held_out_images": len(self.held_out)}


def load_training_data(config: Any, size: int = IMAGE_SIZE,
                       report: Callable[[str], None] | None = None) -> TrainingData:
    """The training and held-out images of a step-budget trainer's ``config``: ``config.data`` (``None``: the
    ``config.images`` training phantoms ``phantom:images``, seeds ``0 .. images-1``, as before there was a choice)
    and ``config.held_out`` (:func:`held_out_spec`; ``None``: ``config.DEFAULT_HELD_OUT`` held-out phantoms for
    phantom data, the last whole volumes of a slice set otherwise; see :func:`training_and_held_out`), ``size`` a
    side, on the CPU; progress goes to ``report`` (default :func:`log`)."""
    report = log if report is None else report
    spec = config.data if config.data is not None else f"phantom:{config.images}"
    phantom = parse_phantom_spec(spec)
    report(f"generating {phantom[0]} training phantoms ..." if phantom is not None else f"loading {spec} ...")
    train, held = training_and_held_out(spec, held_out_spec(config.held_out), held_out_count=config.DEFAULT_HELD_OUT,
                                        size=size)
    if phantom is None:
        report(f"{len(train)} training images ({train.spec}), {len(held)} held out ({held.spec})")
    return TrainingData(spec, train, held, bool(config.augment))


def augment_batch(images: torch.Tensor, generator: torch.Generator, *, flips: bool = True,
                  augment: bool = False) -> torch.Tensor:
    """A training batch after the random left-right ``flips`` and, with ``augment``,
    :func:`random_geometry_and_contrast` (both drawn from ``generator``)."""
    if flips:
        images = random_flips(images, generator)
    if augment:
        images = random_geometry_and_contrast(images, generator)
    return images


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
    shift = (uniform(-2 * max_shift_fraction, 2 * max_shift_fraction),
             uniform(-2 * max_shift_fraction, 2 * max_shift_fraction))
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


def random_intensity_curves(
    images: torch.Tensor,
    generator: torch.Generator,
    knots: int = 6,
    max_bias: float = 0.4,
    nonmonotone: float = 0.0,
) -> torch.Tensor:
    """Contrast-agnostic augmentation of slices ``(B, 1, H, W)`` in [0, 1]: per image a random monotone intensity
    curve and a smooth multiplicative bias field, so a prior learns anatomy rather than one scanner's contrast.

    The curve is piecewise linear through ``(k / K, c_k)``, ``c_k = w_1 + ... + w_k`` with ``w ~ Dirichlet(1, ..., 1)``
    (uniform on the simplex: increasing from 0 to 1), blended with the identity by a uniform weight ``t``:
    ``x -> (1 - t) x + t c(x)``. The bias field is ``exp(b)`` with ``b`` a random combination of the
    2-D cosines of order <= 1 (``cos(pi u)``, ``cos(pi v)``, ``cos(pi u) cos(pi v)``, ``u, v`` in [0, 1]) whose
    coefficients are uniform in ``[-max_bias, max_bias]``; the result is rescaled so its maximum is 1. Parameters are
    drawn on the CPU from ``generator`` (device-independent).

    With ``nonmonotone = p > 0`` a fraction ``p`` of the images (each independently) gets a non-monotone curve
    instead: ``c_0 = 0`` (air stays dark) and ``c_1 .. c_K`` i.i.d. uniform in [0, 1], so the brightest tissue of
    the source can come out dark and a middle grey bright - what fat saturation and T2 weighting do to a T1 or PD
    image, which no monotone curve can mimic (SynthSeg-style random contrasts). ``p = 0`` draws nothing extra, so
    a seed gives the same batches as before the option existed."""
    if not 0.0 <= nonmonotone <= 1.0:
        raise ValueError(f"nonmonotone must be a probability in [0, 1], got {nonmonotone}")
    batch, _, height, width = images.shape
    dtype, device = images.dtype, images.device
    increments = -torch.log(torch.rand(batch, knots, generator=generator, dtype=torch.float64).clamp_min(1e-12))
    levels = torch.cat([torch.zeros(batch, 1, dtype=torch.float64),
                        torch.cumsum(increments, 1) / increments.sum(1, keepdim=True)], 1)
    if nonmonotone > 0:
        shuffled = torch.cat([torch.zeros(batch, 1, dtype=torch.float64),
                              torch.rand(batch, knots, generator=generator, dtype=torch.float64)], 1)
        chosen = torch.rand(batch, generator=generator, dtype=torch.float64) < nonmonotone
        levels = torch.where(chosen[:, None], shuffled, levels)
    levels = levels.to(dtype).to(device)
    blend = torch.rand(batch, generator=generator, dtype=torch.float64).to(dtype).to(device)[:, None, None, None]
    position = images.clamp(0, 1) * knots
    lower = position.floor().clamp(max=knots - 1)
    fraction = position - lower
    index = lower.long().flatten(1)
    low = torch.gather(levels, 1, index).view_as(images)
    high = torch.gather(levels, 1, index + 1).view_as(images)
    curved = (1 - blend) * images + blend * (low + fraction * (high - low))
    coefficients = (2 * torch.rand(batch, 3, generator=generator, dtype=torch.float64) - 1) * max_bias
    u = torch.cos(math.pi * torch.linspace(0, 1, width, dtype=torch.float64))[None, :]
    v = torch.cos(math.pi * torch.linspace(0, 1, height, dtype=torch.float64))[:, None]
    basis = torch.stack([u.expand(height, width), v.expand(height, width), u * v])  # (3, H, W)
    field = torch.exp(torch.einsum("bk,khw->bhw", coefficients, basis))[:, None].to(dtype).to(device)
    biased = curved * field
    return biased / biased.flatten(1).amax(1).clamp_min(1e-6)[:, None, None, None]


# ------------------------------------------------------------------------------------------------ run bookkeeping
def seed_everything(seed: int) -> None:
    """Seed torch's and numpy's global generators (network initialisation)."""
    torch.manual_seed(int(seed))
    np.random.seed(int(seed) % (2**32))


def log(message: str) -> None:
    """Training progress to ``logging`` (logger ``genreg_viewer.training``; stderr unless configured otherwise;
    rank 0 only under ``torchrun``)."""
    ensure_log_handler()
    logger.info(message)


def command_line(argv: Sequence[str] | None, fallback: str) -> str:
    """``genreg ARGV`` for a run started from the command line (``argv`` without the program name), else
    ``fallback``; recorded in the info JSON."""
    return "genreg " + shlex.join(list(argv)) if argv is not None else fallback


def mean_psnr(estimate: torch.Tensor, truth: torch.Tensor) -> float:
    from ..metrics import psnr

    return float(psnr(estimate.detach().clamp(0, 1), truth).mean())


def in_chunks(function: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor, size: int = 16) -> torch.Tensor:
    """``function`` applied to ``inputs`` ``size`` images at a time, the outputs concatenated (held-out sets of real
    slices can be far larger than the four held-out phantoms a network sees at once by default)."""
    return torch.cat([function(inputs[start:start + size]) for start in range(0, inputs.shape[0], size)])


def start_run(config: Any) -> tuple[torch.Generator, TrainingData]:
    """Start a step-budget trainer: ``config.check()``, seed the global generators with ``config.seed`` (network
    initialisation), and return a CPU generator seeded likewise (batches, noise) and the training and held-out
    images of :func:`load_training_data` (128x128, on the CPU; by default ``config.images`` training phantoms, seeds
    ``0 .. images-1``, and ``config.DEFAULT_HELD_OUT`` held-out phantoms)."""
    config.check()
    seed_everything(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    return generator, load_training_data(config)


# ------------------------------------------------------------------------------------------- step-budget training
@dataclass
class StepTrainingConfig:
    """Data, budget and optimiser of a step-budget trainer: the training ``data`` (``phantom:N[:SEED]`` or a slice-set
    ``.h5``; ``None``: ``images`` training phantoms, seeds ``0 .. images-1``), the ``held_out`` images of the final
    scores (:func:`held_out_spec`: ``N`` held-out phantoms, a DATA spec, or ``None`` for :attr:`DEFAULT_HELD_OUT`
    held-out phantoms with phantom data and a slice set's last whole volumes otherwise), ``augment`` (random
    geometry and contrast on top of the flips), ``batch`` size, at most ``steps`` Adam steps or ``minutes`` of
    wall clock, the peak ``learning_rate`` and the ``seed``. Each trainer's config extends it (and may redeclare
    the defaults)."""

    #: held-out phantoms (seeds from :data:`HELD_OUT_SEED`) when the training data are phantoms and ``held_out`` is None
    DEFAULT_HELD_OUT: ClassVar[int] = 4

    images: int = 400
    batch: int = 8
    steps: int = 600
    minutes: float | None = None
    learning_rate: float = 2e-3
    seed: int = 0
    data: str | None = None
    held_out: int | str | None = None
    augment: bool = False
    #: steps between checkpoints (``STEM.checkpoint.pt``, removed after the weights are written unless kept)
    checkpoint_every: int = 200

    def check(self) -> None:
        """Raise ``ValueError`` for settings no trainer can use."""
        if not 1 <= self.images <= HELD_OUT_SEED:
            raise ValueError(f"images must be between 1 and {HELD_OUT_SEED} (seeds >= {HELD_OUT_SEED} are held out)")
        if self.data is not None:
            if not isinstance(self.data, str) or not self.data.strip():
                raise ValueError(f"--data must be phantom:N[:SEED] or a slice-set .h5 file, got {self.data!r}")
            parse_phantom_spec(self.data)  # a malformed phantom spec is refused here, before anything is made
        held = held_out_spec(self.held_out)
        if held is not None:
            parse_phantom_spec(held)
        if self.batch < 1:
            raise ValueError("batch must be at least 1")
        if self.checkpoint_every < 1:
            raise ValueError("checkpoint_every must be at least 1")
        if self.steps < 1 or (self.minutes is not None and self.minutes <= 0):
            raise ValueError("steps must be at least 1 and minutes positive")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise ValueError(f"learning rate must be positive, got {self.learning_rate}")


def step_checkpointing(config: "StepTrainingConfig", stem: str | os.PathLike, resume: bool = False) -> Checkpointing:
    """The checkpoint of a step-budget run writing ``stem``: ``STEM.checkpoint.pt``, written every
    ``config.checkpoint_every`` steps by rank 0; ``resume`` continues from it when every setting but ``steps``,
    ``minutes`` and ``checkpoint_every`` agrees (so a run can be extended)."""
    identity = {k: v for k, v in asdict(config).items() if k not in ("steps", "minutes", "checkpoint_every")}
    from ..models.weights import weights_stem

    stem = weights_stem(stem)
    return Checkpointing(stem.with_name(stem.name + ".checkpoint.pt"), {"config": identity}, resume)


def generator_state(
    generator: torch.Generator,
) -> tuple[Callable[[], dict[str, Any]], Callable[[dict[str, Any]], None]]:
    """``state()`` / ``load_state()`` of a :class:`~genreg_viewer.training.loop.TrainingTask` that save and restore
    ``generator`` (a resumed run then draws the batches and noise the uninterrupted run would have drawn)."""
    def state() -> dict[str, Any]:
        return {"generator": generator.get_state()}

    def load_state(saved: dict[str, Any]) -> None:
        if "generator" in saved:
            generator.set_state(saved["generator"])

    return state, load_state


def train_steps(
    model: torch.nn.Module,
    batch_loss: Callable[..., torch.Tensor],
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
    context: DistributedContext | None = None,
    checkpointing: Checkpointing | None = None,
    checkpoint_every: int | None = None,
    state: Callable[[], dict[str, Any]] | None = None,
    load_state: Callable[[dict[str, Any]], None] | None = None,
) -> LoopOutcome:
    """A step-budget run of the :class:`~genreg_viewer.training.loop.Trainer`: Adam on ``model``'s parameters until
    ``steps`` steps or ``minutes`` are spent, warm-up over 20 steps, then cosine decay to ``learning_rate / 20`` at
    step ``steps`` (or at the end of the time budget, whichever is further along).

    ``batch_loss(step, share)`` returns the loss of a fresh global batch whose tensors went through ``share``
    (needed under ``torchrun``); a function of no arguments is accepted in a single process. Logged every
    ``log_every`` steps as ``step N LOSS_LABEL r elapsed Ts`` (``r`` the smoothed loss); a checkpoint every
    ``checkpoint_every`` steps when ``checkpointing`` is given. Non-finite values raise
    :class:`TrainingDiverged` (``max_non_finite``: that many non-finite losses are skipped first).
    """
    context = context if context is not None else DistributedContext()
    required = [p for p in inspect.signature(batch_loss).parameters.values()
                if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if not required:
        if context.distributed:
            raise TypeError("under torchrun the batch loss must take (step, share) and share its batch")
        plain = batch_loss
        batch_loss = lambda step, share: plain()  # noqa: E731
    period = checkpoint_every if checkpoint_every is not None else steps
    plan = Plan(Schedule(learning_rate, warmup=20, final_fraction=0.05), period=max(1, period), budget="clock",
                steps=steps, minutes=minutes)
    task = TrainingTask(model, lambda step, share: {"loss": batch_loss(step, share)}, state=state,
                        load_state=load_state, after_step=after_step)
    options = LoopOptions(max_grad_norm=max_grad_norm, max_non_finite=max_non_finite, loss_label=loss_label,
                          loss_digits=loss_digits, log_every=log_every, smoothing=smoothing)
    return Trainer(task, plan, context, options, checkpointing).run()


def finish_checkpoint(checkpointing: Checkpointing, context: DistributedContext, keep: bool) -> None:
    """After the weights are written: remove the run's checkpoint unless ``keep`` (rank 0 only)."""
    if context.is_main and not keep:
        checkpointing.path.unlink(missing_ok=True)


def run_info(method: str, config: Any, outcome: LoopOutcome, data: TrainingData, details: str = "",
             **results: Any) -> dict[str, Any]:
    """The info JSON of a step-budget trainer: ``method``, ``training`` (the config dataclass with ``images`` the
    number of training images used, steps done, seconds, ``data``: :meth:`TrainingData.describe` with ``details``,
    and :meth:`TrainingData.info`: the data specs and image counts), ``final_loss`` and then ``results`` (held-out
    scores, ...)."""
    return {
        "method": method,
        "training": {**asdict(config), "images": len(data.train), "steps_done": outcome.steps,
                     "seconds": round(outcome.elapsed, 1), "data": data.describe(details), **data.info()},
        "final_loss": outcome.final_loss,
        **results,
    }
