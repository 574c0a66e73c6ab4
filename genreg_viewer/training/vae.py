"""Two-stage training of the structured-covariance VAE (Duff et al. 2023, section 4).

Stage 1 (:func:`train_vae`): encoder and mean decoder maximise the ELBO with a fixed-variance Gaussian likelihood,
per image::

    loss = ||x~ - G(z)||^2 / (2 s0^2) + KL(N(mu(x~), diag s^2(x~)) || N(0, I)),   z = mu + s * eps,

where ``x~ = x + n`` is the training image with a little Gaussian noise ``n`` (std ``noise_std``; it keeps the
likelihood of flat black background bounded in stage 2) and ``s0`` the fixed likelihood std. Afterwards the
identity covariance ``Sigma = rho I`` gets its maximum-likelihood value ``rho = mean_p (x~ - G(mu(x)))_p^2`` over
the training set, stored in the config (the stage-1 model saved as ``vae_identity``).

Stage 2 (:func:`train_covariance`): with the encoder and mean decoder frozen (eval mode), the covariance decoder
minimises the exact Gaussian nll of the noisy image given ``z ~ q(z|x)`` (paper eqs. 8 and 10; ``latent="mean"``
uses ``z = mu(x)`` instead)::

    loss = [1/2 ||L(z)^T (x~ - G(z))||^2 - sum_p l_p(z)] / n  +  lambda * mean |a(z)|,

with ``a`` the relative off-diagonal weights (an optional L1 penalty), a lower learning rate and more epochs.

Both stages run the one training loop (:class:`genreg_viewer.training.loop.Trainer`, epochs as its periods):
Adam, linear warm-up then cosine decay of the learning rate over the planned steps, random left-right flips,
optionally (``augment``) a small random rotation/zoom/shift and contrast change per image, a checkpoint after every
epoch (``--resume`` continues it), a held-out evaluation per epoch, a loss-curve PNG and the final weights with an
info JSON (command, seeds, data, final losses). Under ``torchrun`` each global batch is split over the processes
(:mod:`genreg_viewer.training.distributed`; batch norm becomes SyncBatchNorm on CUDA).
"""

from __future__ import annotations

import math
import os
import shlex
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from ..fileio import atomic_path
from ..models.vae import (
    COVARIANCE_KINDS,
    GenerativeModel,
    VAEConfig,
    eval_mode,
    model_file_name,
    model_from_weights,
    save_generative_model,
)
from ..models.weights import WeightsError, weights_exist, weights_stem
from .common import (  # the data helpers live in common.py, shared with the other trainers
    HELD_OUT_SEED,
    ImageSet,
    command_line,
    load_image_set,
    log,
    random_flips,
    random_geometry_and_contrast,
    random_intensity_curves,
    seed_everything,
    training_and_held_out,
)
from .distributed import BatchShare, DistributedContext, distributed_run
from .loop import Checkpointing, LoopOptions, Plan, Schedule, Trainer, TrainingTask

#: std of the Gaussian noise added to training images (and to held-out images when the nll is evaluated)
DEFAULT_NOISE_STD = 0.01
#: fixed likelihood std ``s0`` of stage 1
DEFAULT_STAGE1_SIGMA = 0.05
#: generator seed of the noise added to held-out images in :func:`evaluate_model`
EVALUATION_NOISE_SEED = 12345


# ----------------------------------------------------------------------------------------------------------------
# data
def noisy(images: torch.Tensor, noise_std: float, generator: torch.Generator) -> torch.Tensor:
    """``x + n``, ``n ~ N(0, noise_std^2)`` drawn on the CPU from ``generator`` (device-independent)."""
    if noise_std <= 0:
        return images
    noise = torch.randn(images.shape, generator=generator, dtype=images.dtype)
    return images + noise_std * noise.to(images.device)


# ----------------------------------------------------------------------------------------------------------------
# losses and evaluation
def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``KL(N(mu, diag e^logvar) || N(0, I)) = 1/2 sum(mu^2 + e^logvar - logvar - 1)`` per item, ``(B,)``."""
    return 0.5 * (mu.square() + logvar.exp() - logvar - 1.0).sum(dim=1)


def stage1_loss(model: GenerativeModel, x: torch.Tensor, sigma: float, generator: torch.Generator | None = None,
                eps: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Negative ELBO with fixed likelihood std ``sigma`` and its parts (batch means): ``loss`` in nats per pixel
    (the per-image value divided by the pixel count, a scale that suits Adam and gradient clipping), ``mse`` per
    pixel, ``kl`` per image. The reparametrisation noise ``eps ~ N(0, I)`` (``(B, latent_dim)``) is drawn from
    ``generator`` unless given."""
    mu, logvar = model.encode(x)
    if eps is None:
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype)
    eps = eps.to(mu.device)
    z = mu + torch.exp(0.5 * logvar) * eps
    pixels = x[0].numel()
    squared = (x - model.decode_mean(z)).square().flatten(1).sum(1)
    kl = kl_divergence(mu, logvar)
    loss = (squared / (2 * sigma**2) + kl) / pixels
    return {"loss": loss.mean(), "mse": (squared / pixels).mean(), "kl": kl.mean()}


def covariance_loss(model: GenerativeModel, target: torch.Tensor, mean: torch.Tensor, z: torch.Tensor,
                    l1: float) -> dict[str, torch.Tensor]:
    """Stage-2 loss: exact nll in nats per pixel (with ``1/2 log 2 pi``) plus ``l1 * mean |a|``."""
    if model.covariance_decoder is None:
        raise ValueError("an identity-covariance model has no covariance decoder to train")
    channels = model.covariance_decoder(z)
    factor = model.decode_cholesky_from_channels(channels)
    nll = factor.nll(target, mean, include_constant=True) / target[0].numel()
    penalty = channels[:, 1:].abs().mean() if channels.shape[1] > 1 else channels.new_zeros(())
    return {"loss": nll.mean() + l1 * penalty, "nll": nll.mean(), "l1": penalty}


@torch.no_grad()
def latent_means(model: GenerativeModel, images: torch.Tensor,
                 batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """``mu(x)`` and ``G(mu(x))`` for every image (eval mode, batched); results on the images' device."""
    mus, means = [], []
    with eval_mode(model):
        for start in range(0, images.shape[0], batch_size):
            mu, _ = model.encode(images[start:start + batch_size])
            mus.append(mu)
            means.append(model.decode_mean(mu))
    return torch.cat(mus), torch.cat(means)


@torch.no_grad()
def evaluate_model(
    model: GenerativeModel,
    images: torch.Tensor,
    noise_std: float = DEFAULT_NOISE_STD,
    seed: int = EVALUATION_NOISE_SEED,
    batch_size: int = 32,
) -> dict[str, float]:
    """Held-out quality of a model, with ``z = mu(x)`` and ``G(z)`` in eval mode.

    * ``psnr``: mean PSNR (range 1) of ``G(mu(x))`` against ``x``; ``mse`` its mean squared error;
    * ``nll``: exact Gaussian ``-log p(x + n | z)`` in nats per pixel (including ``1/2 log 2 pi``) with the noise
      ``n ~ N(0, noise_std^2)`` of training drawn from ``seed`` (``nan`` for an identity model without ``rho``).
    """
    from ..metrics import psnr

    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    totals = {"psnr": 0.0, "mse": 0.0, "nll": 0.0}
    has_covariance = model.config.covariance_kind != "identity" or model.config.identity_rho is not None
    with eval_mode(model):
        for start in range(0, images.shape[0], batch_size):
            x = images[start:start + batch_size].to(device)
            target = noisy(x, noise_std, generator)
            mu, _ = model.encode(x)
            mean = model.decode_mean(mu)
            totals["psnr"] += float(psnr(mean, x).sum())
            totals["mse"] += float((mean - x).square().flatten(1).mean(1).sum())
            if has_covariance:
                nll = model.decode_cholesky(mu).nll(target, mean, include_constant=True)
                totals["nll"] += float(nll.sum()) / x[0].numel()
    result = {key: value / images.shape[0] for key, value in totals.items()}
    if not has_covariance:
        result["nll"] = float("nan")
    return result


def lag_one_correlation(residuals: torch.Tensor) -> float:
    """Mean of the horizontal and vertical lag-1 autocorrelations of zero-mean residual images ``(..., H, W)``:
    ``1/2 (mean(r_{i,j} r_{i,j+1}) + mean(r_{i,j} r_{i+1,j})) / mean(r^2)`` (0 for white noise; near 1 for residuals
    with spatial structure, as sampled from a covariance model)."""
    r = residuals.double()
    power = r.square().mean()
    horizontal = (r[..., :, 1:] * r[..., :, :-1]).mean() / power
    vertical = (r[..., 1:, :] * r[..., :-1, :]).mean() / power
    return float(0.5 * (horizontal + vertical))


@torch.no_grad()
def maximum_likelihood_rho(model: GenerativeModel, images: torch.Tensor, noise_std: float, seed: int,
                           batch_size: int = 64) -> float:
    """ML variance of ``Sigma = rho I``: ``rho = mean over images and pixels of (x + n - G(mu(x)))^2``."""
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    total = 0.0
    for start in range(0, images.shape[0], batch_size):
        x = images[start:start + batch_size].to(device)
        mean = model.reconstruct(x)
        total += float((noisy(x, noise_std, generator) - mean).square().sum())
    return total / images.numel()


# ----------------------------------------------------------------------------------------------------------------
# the epoch loop shared by both stages
@dataclass
class LoopSettings:
    """What both stages share; everything here is recorded in the info JSON and must match on ``--resume``."""

    data: str
    held_out: str
    epochs: int
    batch_size: int
    lr: float
    seed: int
    noise_std: float
    flips: bool = True
    #: random rotation/zoom/shift and contrast (gamma) per image (for small real data sets; phantoms need none)
    augment: bool = False
    #: random monotone intensity curves and bias fields per image (:func:`random_intensity_curves`): contrast-agnostic
    intensity_curves: bool = False
    #: the fraction of those curves that are non-monotone (fat-saturation-like contrast swaps; needs intensity_curves)
    nonmonotone_curves: float = 0.0
    warmup_steps: int = 50
    final_lr_fraction: float = 0.02
    grad_clip: float = 10.0
    #: wall-clock budget: after the first epoch the epoch count is cut to what fits (``None``: no budget)
    minutes: float | None = None

    def validate(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"--epochs must be at least 1, got {self.epochs}")
        if self.minutes is not None and not (self.minutes > 0 and math.isfinite(self.minutes)):
            raise ValueError(f"--minutes must be a positive number, got {self.minutes}")
        if not 0.0 <= self.nonmonotone_curves <= 1.0:
            raise ValueError(f"--nonmonotone-curves must be in [0, 1], got {self.nonmonotone_curves}")
        if self.nonmonotone_curves > 0 and not self.intensity_curves:
            raise ValueError("--nonmonotone-curves needs --intensity-curves")
        if self.batch_size < 1:
            raise ValueError(f"--batch-size must be at least 1, got {self.batch_size}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"--lr must be a positive number, got {self.lr}")
        if not 0 <= self.noise_std < 0.5:
            raise ValueError(f"--noise-std must be in [0, 0.5), got {self.noise_std}")

    def schedule(self) -> Schedule:
        """Linear warm-up over ``warmup_steps``, then cosine decay from ``lr`` to ``final_lr_fraction * lr`` at the
        last step."""
        return Schedule(self.lr, warmup=self.warmup_steps, final_fraction=self.final_lr_fraction)


@dataclass
class TrainingRun:
    """Paths of one training run: ``OUT/STEM.{safetensors,json}``, ``STEM.checkpoint.pt``, ``STEM_losses.png``."""

    out_dir: Path
    stem_name: str

    @property
    def stem(self) -> Path:
        return self.out_dir / self.stem_name

    @property
    def checkpoint(self) -> Path:
        return self.out_dir / f"{self.stem_name}.checkpoint.pt"

    @property
    def loss_plot(self) -> Path:
        return self.out_dir / f"{self.stem_name}_losses.png"


def plot_losses(history: Sequence[dict[str, float]], path: Path, title: str, keys: Sequence[tuple[str, str]]) -> None:
    """Loss curves (per epoch) as a PNG, written atomically with matplotlib's Agg backend."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4.2 * len(keys), 3.2), dpi=100)
    epochs = [h["epoch"] for h in history]
    for i, (key, label) in enumerate(keys):
        axis = figure.add_subplot(1, len(keys), i + 1)
        for prefix, style in (("train_", "-o"), ("held_out_", "--s")):
            values = [h.get(prefix + key, float("nan")) for h in history]
            if any(math.isfinite(v) for v in values):
                axis.plot(epochs, values, style, markersize=3, label=prefix.rstrip("_").replace("_", "-"))
        axis.set_xlabel("epoch")
        axis.set_title(label, fontsize=10)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")


def run_epochs(
    *,
    run: TrainingRun,
    settings: LoopSettings,
    identity: dict[str, Any],
    trainable: torch.nn.Module,
    train_mode: Callable[[], object],
    count: int,
    batch_loss: Callable[[torch.Tensor, torch.Generator, BatchShare], dict[str, torch.Tensor]],
    evaluate: Callable[[], dict[str, float]],
    resume: bool,
    stage_label: str,
    context: DistributedContext,
) -> tuple[list[dict[str, float]], float]:
    """Adam over ``trainable``'s parameters for ``settings.epochs`` epochs of ``count`` items: the one training loop
    (:class:`genreg_viewer.training.loop.Trainer`) with epochs as its periods.

    With ``settings.minutes`` the epoch count is cut to the epochs that fit the budget, estimated after the first
    and (at its steady pace) the second epoch of this run (:func:`genreg_viewer.training.loop.periods_within_budget`);
    ``settings.epochs`` is updated, so the info JSON records what ran, and the cosine schedule follows the new total
    from then on.

    ``batch_loss(indices, generator, share)`` returns the losses of the global batch ``indices`` (``"loss"`` is
    minimised), drawing its random numbers for the whole batch from ``generator`` and passing its tensors through
    ``share``. The batch order and noise of epoch ``e`` come from a generator seeded with ``(seed, e)``, so a
    resumed run continues exactly. Returns the per-epoch history and the training seconds.
    """
    settings.validate()
    context.check_batch(settings.batch_size, "--batch-size")
    context.check_epoch_batches(count, settings.batch_size, trainable)
    steps_per_epoch = math.ceil(count / settings.batch_size)
    plan = Plan(settings.schedule(), period=steps_per_epoch, budget="periods", periods=settings.epochs,
                minutes=settings.minutes)
    epoch_data: dict[str, Any] = {"epoch": None}

    def loss(step: int, share: BatchShare) -> dict[str, torch.Tensor]:
        epoch, i = divmod(step, steps_per_epoch)
        if epoch_data["epoch"] != epoch:
            generator = torch.Generator().manual_seed(settings.seed * 100_003 + epoch)
            epoch_data.update(epoch=epoch, generator=generator, order=torch.randperm(count, generator=generator))
        indices = epoch_data["order"][i * settings.batch_size:(i + 1) * settings.batch_size]
        return batch_loss(indices, epoch_data["generator"], share)

    task = TrainingTask(trainable, loss, train_mode=train_mode, evaluate=evaluate)
    options = LoopOptions(max_grad_norm=settings.grad_clip, label=stage_label, log_every=None, progress_bar=True,
                          final_check=False)
    outcome = Trainer(task, plan, context, options, Checkpointing(run.checkpoint, identity, resume)).run()
    settings.epochs = plan.periods
    return outcome.history, outcome.seconds


def _resumable(settings: LoopSettings) -> dict[str, Any]:
    """The settings a checkpoint must agree with on ``--resume``: all but ``epochs`` (a run may be extended; the
    cosine schedule is then stretched over the new total)."""
    resumable = {k: v for k, v in asdict(settings).items() if k not in ("epochs", "minutes")}
    if not resumable["nonmonotone_curves"]:
        del resumable["nonmonotone_curves"]  # checkpoints from before the option match when it is off
    return resumable


def _stage_info(
    argv: Sequence[str] | None,
    stage: str,
    settings: LoopSettings,
    train: ImageSet,
    held_out: ImageSet,
    seconds: float,
    device: torch.device,
    history: list[dict[str, float]],
    final: dict[str, float],
    processes: int = 1,
    **details: Any,
) -> dict[str, Any]:
    """The info JSON of either stage: command, ``stage``, settings, stage-specific ``details``, data sizes, time,
    the last epoch's training losses with the ``final`` held-out figures, and the per-epoch history."""
    return {
        "command": command_line(argv, shlex.join(sys.argv)),
        "stage": stage,
        "settings": asdict(settings),
        **details,
        "training_images": len(train),
        "held_out_images": len(held_out),
        "held_out_data": held_out.spec,
        "seconds": round(seconds, 1),
        "device": str(device),
        "processes": processes,
        "torch": torch.__version__,
        "final": {**{k: v for k, v in history[-1].items() if k.startswith("train_")}, **final},
        "history": history,
    }


def augmented(x: torch.Tensor, settings: LoopSettings, generator: torch.Generator) -> torch.Tensor:
    """The training batch after the configured random flips and geometry/contrast augmentation."""
    if settings.flips:
        x = random_flips(x, generator)
    if settings.augment:
        x = random_geometry_and_contrast(x, generator)
    if settings.intensity_curves:
        x = random_intensity_curves(x, generator, nonmonotone=settings.nonmonotone_curves)
    return x


# ----------------------------------------------------------------------------------------------------------------
# stage 1
@dataclass
class VAETrainingSettings(LoopSettings):
    """Stage 1: ``sigma`` is the fixed likelihood std ``s0``."""

    sigma: float = DEFAULT_STAGE1_SIGMA

    def validate(self) -> None:
        super().validate()
        if not (self.sigma > 0 and math.isfinite(self.sigma)):
            raise ValueError(f"--sigma must be a positive number, got {self.sigma}")


def train_vae(
    config: VAEConfig,
    settings: VAETrainingSettings,
    out_dir: str | os.PathLike,
    device: torch.device | str = "cpu",
    resume: bool = False,
    argv: Sequence[str] | None = None,
) -> Path:
    """Stage 1; writes ``OUT/vae_identity.{safetensors,json}`` (with ``identity_rho``) and returns its stem. Under
    ``torchrun`` each global batch of ``settings.batch_size`` images is split over the processes (rank 0 writes)."""
    settings.validate()
    config = VAEConfig.from_dict({**config.to_dict(), "covariance_kind": "identity", "identity_rho": None})  # a copy
    with distributed_run(device) as context:
        device = context.device
        run = TrainingRun(Path(out_dir), model_file_name("identity"))
        train, held_out = training_and_held_out(settings.data, settings.held_out, size=config.image_size)
        log(f"stage 1: {len(train)} training images ({train.spec}), {len(held_out)} held out ({held_out.spec})")
        seed_everything(settings.seed)
        model = GenerativeModel(config).to(device)
        with torch.no_grad():  # start G at the mean intensity instead of 0
            model.mean_decoder.out.bias.fill_(float(train.images.mean()))
        images = train.images.to(device)
        identity = {"stage": "vae", "config": config.to_dict(), "settings": _resumable(settings)}

        def batch_loss(indices: torch.Tensor, generator: torch.Generator, share: BatchShare) -> dict[str, torch.Tensor]:
            x = augmented(images[indices.to(device)], settings, generator)
            target = noisy(x, settings.noise_std, generator)
            eps = torch.randn((x.shape[0], config.latent_dim), generator=generator, dtype=x.dtype)
            return stage1_loss(model, share(target), settings.sigma, eps=share(eps))

        def evaluate() -> dict[str, float]:
            result = evaluate_model(model, held_out.images, settings.noise_std)
            return {"psnr": result["psnr"], "mse": result["mse"]}

        history, seconds = run_epochs(
            run=run, settings=settings, identity=identity, trainable=model, train_mode=model.train, count=len(train),
            batch_loss=batch_loss, evaluate=evaluate, resume=resume, stage_label="vae", context=context,
        )
        rho = maximum_likelihood_rho(model, images, settings.noise_std, seed=settings.seed + 7)
        model.config.identity_rho = rho
        final = evaluate_model(model, held_out.images, settings.noise_std)
        log(f"stage 1 done: rho = {rho:.4g} (pixel std {math.sqrt(rho):.4f}); held-out PSNR {final['psnr']:.2f} dB, "
            f"nll {final['nll']:.4f} nats/pixel")
        info = _stage_info(
            argv, "1: encoder + mean decoder, fixed-variance Gaussian likelihood + KL", settings, train, held_out,
            seconds, device, history, {"held_out_psnr": final["psnr"], "held_out_mse": final["mse"],
                                       "held_out_nll_per_pixel": final["nll"], "identity_rho": rho},
            processes=context.world_size,
        )
        if context.is_main:
            save_generative_model(model, run.stem, info)
            plot_losses(history, run.loss_plot, f"VAE stage 1 ({len(train)} images)",
                        [("loss", "-ELBO / pixel (fixed s0)"), ("mse", "MSE"), ("psnr", "held-out PSNR (dB)")])
        return run.stem


# ----------------------------------------------------------------------------------------------------------------
# stage 2
@dataclass
class CovarianceTrainingSettings(LoopSettings):
    """Stage 2: ``l1`` weights the penalty on the relative off-diagonal weights."""

    l1: float = 0.0
    #: ``"sample"``: ``z ~ q(z|x)`` per batch, as the paper's eq. 8 (the expected nll under the encoder);
    #: ``"mean"``: ``z = mu(x)`` (how the bundled phantom weights were trained)
    latent: str = "sample"

    def validate(self) -> None:
        super().validate()
        if not (self.l1 >= 0 and math.isfinite(self.l1)):
            raise ValueError(f"--l1 must be a non-negative number, got {self.l1}")
        if self.latent not in ("sample", "mean"):
            raise ValueError(f"--latent must be 'sample' or 'mean', got {self.latent!r}")


def resolve_vae_stem(path: str | os.PathLike) -> Path:
    """``--vae``: a folder holding ``vae_identity.*`` or the stem/file of a saved stage-1 model."""
    path = Path(path)
    stem = path / model_file_name("identity") if path.is_dir() else weights_stem(path)
    if not weights_exist(stem):
        raise FileNotFoundError(f"no stage-1 VAE weights at {stem} (.safetensors + .json); "
                                "train one with 'genreg train vae'")
    return stem


def initialise_covariance_head(model: GenerativeModel, log_diag_start: float) -> None:
    """Start the covariance decoder near ``Sigma = exp(-2 l0) I``: small output weights, bias of channel 0 at
    ``logit((l0 - l_min) / (l_max - l_min))``, off-diagonal biases 0."""
    cfg = model.config
    fraction = (min(max(log_diag_start, cfg.log_diag_min + 0.05), cfg.log_diag_max - 0.05) - cfg.log_diag_min) / (
        cfg.log_diag_max - cfg.log_diag_min)
    out = model.covariance_decoder.out
    with torch.no_grad():
        out.weight.mul_(0.1)
        out.bias.zero_()
        out.bias[0] = math.log(fraction / (1 - fraction))


def train_covariance(
    vae: str | os.PathLike,
    kind: str,
    settings: CovarianceTrainingSettings,
    out_dir: str | os.PathLike,
    neighbourhood: int = 3,
    device: torch.device | str = "cpu",
    resume: bool = False,
    argv: Sequence[str] | None = None,
) -> Path:
    """Stage 2 for ``kind`` (``diagonal`` or ``covar``); writes ``OUT/vae_<kind>.{safetensors,json}``.

    When the stage-1 model lies in ``OUT`` the new file stores only the covariance decoder and refers to it (its
    SHA-256 pinned); otherwise it is a self-contained copy.
    """
    if kind not in COVARIANCE_KINDS or kind == "identity":
        raise ValueError(f"--kind must be 'diagonal' or 'covar', got {kind!r}")
    settings.validate()
    with distributed_run(device) as context:
        device = context.device
        base_stem = resolve_vae_stem(vae)
        base, base_info = model_from_weights(base_stem, device)
        if base.config.identity_rho is None:
            raise WeightsError(f"{base_stem}.json has no identity_rho; is it a finished stage-1 model?")
        config = VAEConfig.from_dict({**base.config.to_dict(), "covariance_kind": kind, "neighbourhood": neighbourhood,
                                      "identity_rho": None})
        run = TrainingRun(Path(out_dir), model_file_name(kind))
        train, held_out = training_and_held_out(settings.data, settings.held_out, size=config.image_size)
        log(f"stage 2 ({kind}): {len(train)} training images ({train.spec}), {len(held_out)} held out "
            f"({held_out.spec})")
        seed_everything(settings.seed)
        model = GenerativeModel(config).to(device)
        model.encoder.load_state_dict(base.encoder.state_dict())
        model.mean_decoder.load_state_dict(base.mean_decoder.state_dict())
        model.eval()  # the frozen networks stay in eval mode; only the covariance decoder switches to training
        for module in (model.encoder, model.mean_decoder):
            module.requires_grad_(False)
        initialise_covariance_head(model, -0.5 * math.log(base.config.identity_rho))
        images = train.images.to(device)
        identity = {"stage": "covariance", "config": config.to_dict(), "settings": _resumable(settings),
                    "base": str(base_stem.resolve())}

        covariance_decoder = model.covariance_decoder
        assert covariance_decoder is not None  # kind is diagonal or covar

        def train_mode() -> None:
            covariance_decoder.train()

        def batch_loss(indices: torch.Tensor, generator: torch.Generator, share: BatchShare) -> dict[str, torch.Tensor]:
            x = augmented(images[indices.to(device)], settings, generator)
            eps = (torch.randn((x.shape[0], config.latent_dim), generator=generator, dtype=x.dtype)
                   if settings.latent == "sample" else None)
            target = share(noisy(x, settings.noise_std, generator))
            x = share(x)
            with torch.no_grad():  # the frozen encoder and mean decoder (eval mode)
                mu, logvar = model.encode(x)
                if eps is not None:  # z ~ q(z|x), paper eq. 8
                    mu = mu + torch.exp(0.5 * logvar) * share(eps).to(device)
                mean = model.decode_mean(mu)
            return covariance_loss(model, target, mean, mu, settings.l1)

        def evaluate() -> dict[str, float]:
            return {"nll": evaluate_model(model, held_out.images, settings.noise_std)["nll"]}

        history, seconds = run_epochs(
            run=run, settings=settings, identity=identity, trainable=covariance_decoder, train_mode=train_mode,
            count=len(train), batch_loss=batch_loss, evaluate=evaluate, resume=resume, stage_label=kind,
            context=context,
        )
        final = evaluate_model(model, held_out.images, settings.noise_std)
        log(f"stage 2 ({kind}) done: held-out nll {final['nll']:.4f} nats/pixel, PSNR {final['psnr']:.2f} dB")
        shared = base_stem.resolve().parent == run.out_dir.resolve()
        info = _stage_info(
            argv, f"2: covariance decoder ({kind}), encoder and mean decoder frozen, exact Gaussian nll", settings,
            train, held_out, seconds, device, history,
            {"held_out_psnr": final["psnr"], "held_out_nll_per_pixel": final["nll"]},
            processes=context.world_size, neighbourhood=neighbourhood,
            stage1_weights=str(base_stem.name if shared else base_stem), stage1_command=base_info.get("command"),
        )
        if context.is_main:
            save_generative_model(model, run.stem, info, base=base_stem if shared else None)
            plot_losses(history, run.loss_plot, f"covariance decoder, {kind} ({len(train)} images)",
                        [("nll", "nll (nats/pixel)")])
        return run.stem


__all__ = [
    "CovarianceTrainingSettings",
    "DEFAULT_NOISE_STD",
    "DEFAULT_STAGE1_SIGMA",
    "HELD_OUT_SEED",
    "ImageSet",
    "LoopSettings",
    "VAETrainingSettings",
    "covariance_loss",
    "evaluate_model",
    "kl_divergence",
    "lag_one_correlation",
    "latent_means",
    "load_image_set",
    "maximum_likelihood_rho",
    "plot_losses",
    "resolve_vae_stem",
    "stage1_loss",
    "train_covariance",
    "train_vae",
    "training_and_held_out",
]
