"""The one training loop of every ``genreg train`` kind (:class:`Trainer`).

Each step ``s``: a fresh global batch and its losses from the trainer's ``batch_loss(step, share)`` (a dict with the
minimised ``"loss"``, each a mean over this rank's share of the batch), the learning rate of :class:`Schedule`, the
backward pass (gradients averaged over the ranks under ``torchrun``; see :mod:`.distributed`), optional gradient-norm
clipping, the Adam step, the trainer's ``after_step()`` and a divergence check (:func:`check_finite`). The logged
loss is the global-batch mean, smoothed ``r <- (1 - smoothing) r + smoothing loss``.

Two budgets (:class:`Plan`):

* ``"clock"`` (step-budget trainers: denoiser, varnet, edip, flow): stop after ``steps`` steps or ``minutes`` of wall
  clock, whichever comes first; the cosine decay follows the larger of the two fractions spent. A *period* of
  ``period`` steps ends with a checkpoint.
* ``"periods"`` (the VAE's epochs): ``periods`` periods of ``period`` steps; with ``minutes`` the count is set to
  the whole periods that fit (:func:`periods_within_budget`), estimated after the first period of this run and again
  after the second at its own pace (the first carries start-up costs: CUDA context, cuDNN autotuning); the schedule
  follows the new total.

At the end of each period: the trainer's ``evaluate()`` (held-out figures; every rank runs it), a history record
(period means of the training losses and the held-out figures), a divergence check, and rank 0 writes the checkpoint
(``torch.save``; read back with ``torch.load(weights_only=True)``, so a crafted file cannot run code). ``resume``
continues from it: model, optimiser, step, history and the trainer's own state (generators, data order) from
``state()`` / ``load_state()``; the checkpoint's ``identity`` (the settings that must not change) must match.
"""

from __future__ import annotations

import functools
import logging
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from ..fileio import atomic_path
from .distributed import BatchShare, DistributedContext, EmptyShareError, logger


def ensure_log_handler() -> None:
    """Training progress goes to ``logging`` (logger ``genreg_viewer.training``); when nothing is configured, its
    messages (INFO and up) are written to stderr, one per line. Under ``torchrun`` only rank 0 logs INFO."""
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)


class TrainingDiverged(RuntimeError):  # noqa: N818 (public name since the first trainers)
    """Training produced a non-finite loss, parameter, buffer or evaluation figure; nothing is written."""


def _non_finite_tensors(module: torch.nn.Module) -> list[str]:
    tensors = [(name, t) for name, t in module.state_dict().items() if t.is_floating_point() or t.is_complex()]
    if not tensors:
        return []
    finite = torch.stack([torch.isfinite(t).all() for _, t in tensors])  # one device sync for all of them
    if bool(finite.all()):
        return []
    return [name for (name, _), ok in zip(tensors, finite.tolist()) if not ok]


def divergence(*, loss: torch.Tensor | float | None = None, module: torch.nn.Module | None = None,
               values: dict[str, Any] | None = None) -> str | None:
    """What is non-finite: the ``loss``, a parameter or buffer of ``module`` (e.g. batch-norm statistics) or one
    of the numbers in ``values`` (held-out figures); ``None`` when all are finite."""
    if isinstance(loss, torch.Tensor):
        loss = float(loss.detach())
    if loss is not None and not math.isfinite(loss):
        return f"the loss became {loss}"
    if module is not None:
        bad = _non_finite_tensors(module)
        if bad:
            return f"{len(bad)} parameter tensor(s) became NaN or infinite ({', '.join(bad[:3])})"
    if values:
        bad_keys = [k for k, v in values.items() if isinstance(v, (int, float)) and not math.isfinite(v)]
        if bad_keys:
            return f"the evaluation gave {', '.join(f'{k}={values[k]}' for k in bad_keys[:3])}"
    return None


def diverged(where: str, problem: str) -> TrainingDiverged:
    return TrainingDiverged(f"training diverged at {where}: {problem}; lower --lr (nothing was written)")


def check_finite(where: str, *, loss: torch.Tensor | float | None = None, module: torch.nn.Module | None = None,
                 values: dict[str, Any] | None = None) -> None:
    """Stop training (:class:`TrainingDiverged`, one line naming ``where``) when :func:`divergence` finds a problem.
    The loop checks after every step and every evaluation, before anything is saved, so a diverged run writes no
    weights."""
    problem = divergence(loss=loss, module=module, values=values)
    if problem is not None:
        raise diverged(where, problem)


def set_learning_rate(optimizer: torch.optim.Optimizer, value: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = value


@dataclass(frozen=True)
class Schedule:
    """Linear warm-up over ``warmup`` steps, then cosine decay from ``peak`` to ``final_fraction * peak``.

    ``lr(s, p) = peak * min(1, (s + 1) / warmup) * (f + (1 - f) (1 + cos(pi p)) / 2)`` with ``p = min(1, progress)``
    and ``f = final_fraction``.
    """

    peak: float
    warmup: int = 20
    final_fraction: float = 0.05

    def __call__(self, step: int, progress: float) -> float:
        warm = min(1.0, (step + 1) / max(1, self.warmup))
        floor = self.final_fraction
        return self.peak * warm * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def periods_within_budget(budget_seconds: float, elapsed_seconds: float, pace_seconds: float, periods_done: int,
                          minimum: int, maximum: int) -> int:
    """Total periods that fit a wall-clock budget: the ``periods_done`` so far plus the whole periods of
    ``pace_seconds`` that fit the ``budget_seconds - elapsed_seconds`` left, clipped to ``[minimum, maximum]``:
    ``min(maximum, max(minimum, periods_done + max(0, floor((budget - elapsed) / pace))))``."""
    fitting = periods_done + max(0, math.floor((budget_seconds - elapsed_seconds) / max(pace_seconds, 1e-9)))
    return min(maximum, max(minimum, fitting))


@dataclass
class Plan:
    """How long to train: ``budget`` ``"clock"`` (at most ``steps`` steps or ``minutes``) or ``"periods"``
    (``periods`` periods, cut to what fits ``minutes``); ``period`` steps between evaluations and checkpoints;
    the learning-rate ``schedule`` reaches its floor at step ``steps`` (clock) or at the last step (periods)."""

    schedule: Schedule
    period: int
    budget: str = "clock"
    steps: int = 0
    periods: int = 0
    minutes: float | None = None

    def __post_init__(self) -> None:
        if self.budget not in ("clock", "periods"):
            raise ValueError(f"budget must be 'clock' or 'periods', got {self.budget!r}")
        if self.period < 1:
            raise ValueError("a period needs at least one step")
        if self.budget == "clock" and self.steps < 1:
            raise ValueError("training needs at least one step")
        if self.budget == "periods" and self.periods < 1:
            raise ValueError("training needs at least one period")
        if self.minutes is not None and not (self.minutes > 0 and math.isfinite(self.minutes)):
            raise ValueError(f"the time budget must be a positive number of minutes, got {self.minutes}")

    @property
    def total_steps(self) -> int:
        return self.steps if self.budget == "clock" else self.periods * self.period

    def progress(self, step: int, elapsed: float) -> float:
        if self.budget == "periods":
            return step / max(1, self.total_steps - 1)
        progress = step / self.steps
        if self.minutes is not None:
            progress = max(progress, elapsed / (60 * self.minutes))
        return progress

    def finished(self, step: int, elapsed: float) -> bool:
        if step >= self.total_steps:
            return True
        return self.budget == "clock" and self.minutes is not None and elapsed >= 60 * self.minutes


@dataclass
class Checkpointing:
    """The checkpoint file ``path``, the ``identity`` it must match on ``--resume`` and whether to ``resume``."""

    path: Path
    identity: dict[str, Any]
    resume: bool = False


@dataclass
class LoopOutcome:
    """What a :meth:`Trainer.run` did: ``steps`` taken (skipped ones included; counting a resumed run's earlier
    steps), the smoothed ``final_loss`` (``None`` when no step succeeded), ``skipped`` non-finite steps, the logged
    ``curve`` ``[[step, smoothed loss], ...]``, the per-period ``history``, the training ``seconds`` (earlier runs
    included) and the final ``plan`` (its ``periods`` cut by a time budget)."""

    steps: int
    final_loss: float | None
    plan: Plan
    seconds: float = 0.0
    skipped: int = 0
    curve: list[list[float]] = field(default_factory=list)
    history: list[dict[str, float]] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)

    @property
    def elapsed(self) -> float:
        """Seconds since this run's training started (its clock keeps running)."""
        return time.perf_counter() - self.started


def _load_checkpoint(checkpointing: Checkpointing) -> dict[str, Any]:
    path = checkpointing.path
    if not path.is_file():
        raise FileNotFoundError(f"--resume: no checkpoint {path} to resume from")
    try:
        # weights_only: tensors, numbers, strings and containers only -- a crafted file cannot run code
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # zip errors of a damaged file, or objects other than plain data
        raise ValueError(f"--resume: checkpoint {path} is unreadable: {exc}") from exc
    stored = payload.get("identity") if isinstance(payload, dict) else None
    identity = checkpointing.identity
    if stored != identity:
        changed = sorted(k for k in set(stored or {}) | set(identity) if (stored or {}).get(k) != identity.get(k))
        raise ValueError(f"--resume: checkpoint {path} was made with different settings ({', '.join(changed)}); "
                         "use the same options or a new output")
    return payload


def _check_checkpoint(payload: dict[str, Any], path: Path, trainable: torch.nn.Module, plan: Plan) -> int:
    """The step to resume after, when ``payload`` holds everything a resume needs with the right types (one
    ``ValueError`` line naming the checkpoint and the field otherwise): ``trainable`` tensors of the network's
    names and shapes, an ``optimizer`` state, a ``step`` in ``[0, total steps]`` (or an ``epoch``), a ``history``
    list, finite ``seconds``; a checkpoint with a bad step or no ``trainable`` was resumed before."""
    from ..validators import is_finite_number
    from ..models.weights import describe_mismatch

    def fail(field: str, expected: str) -> ValueError:
        return ValueError(f"--resume: checkpoint {path} is damaged: {field} must be {expected}")

    state = payload.get("trainable")
    if not isinstance(state, dict) or not all(isinstance(t, torch.Tensor) for t in state.values()):
        raise fail("'trainable'", "the network's tensors")
    expected = {name: list(t.shape) for name, t in trainable.state_dict().items()}
    found = {name: list(t.shape) for name, t in state.items()}
    if expected != found:
        raise ValueError(f"--resume: checkpoint {path} holds another network: {describe_mismatch(expected, found)}")
    if not isinstance(payload.get("optimizer"), dict):
        raise fail("'optimizer'", "an optimiser state")
    if "step" in payload:
        step = payload["step"]
    else:
        epoch = payload.get("epoch")
        step = epoch * plan.period if isinstance(epoch, int) and not isinstance(epoch, bool) else None
    if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step <= plan.total_steps:
        raise fail("'step'", f"an integer from 0 to {plan.total_steps} (this run's steps)")
    if not isinstance(payload.get("history"), list) or not isinstance(payload.get("curve", []), list):
        raise fail("'history' and 'curve'", "lists")
    seconds, skipped, running = payload.get("seconds"), payload.get("skipped", 0), payload.get("running")
    if not is_finite_number(seconds) or seconds < 0:
        raise fail("'seconds'", "a finite number >= 0")
    if isinstance(skipped, bool) or not isinstance(skipped, int) or not 0 <= skipped <= plan.total_steps:
        raise fail("'skipped'", f"an integer from 0 to {plan.total_steps}")
    if running is not None and not is_finite_number(running):
        raise fail("'running'", "null or a finite number")
    buffers = payload.get("buffers", {})
    if not isinstance(buffers, dict) or not all(isinstance(b, torch.Tensor) for b in buffers.values()):
        raise fail("'buffers'", "tensors")
    own = dict(trainable.named_buffers())
    for name, buffer in buffers.items():
        if name in own and buffer.shape != own[name].shape:
            raise fail(f"buffer {name!r}", f"of shape {list(own[name].shape)}")
    return step


def _save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def _zero_loss(trainable: torch.nn.Module) -> torch.Tensor:
    """0, connected to every trained parameter (the contribution of a rank whose share of the batch is empty)."""
    return sum((p.sum() * 0 for p in trainable.parameters() if p.requires_grad), torch.zeros(()))


def _share_loss(batch_loss: Callable[[int, BatchShare], dict[str, torch.Tensor]], trainable: torch.nn.Module,
                step: int, share: BatchShare, keys: list[str] | None) -> dict[str, torch.Tensor]:
    """``batch_loss(step, share)``, or zeros connected to the parameters when this rank's share is empty."""
    try:
        return batch_loss(step, share)
    except EmptyShareError:
        zero = _zero_loss(trainable)
        return {key: zero for key in (keys or ["loss"])}


@dataclass
class TrainingTask:
    """What a :class:`Trainer` trains and how it scores a batch: Adam runs over ``trainable``'s parameters that
    require gradients; ``batch_loss(step, share)`` returns the losses of a fresh global batch (``"loss"`` is
    minimised) after passing every tensor of it through ``share`` and drawing its random numbers for the whole global
    batch first, so every rank's generators stay in step. Optional hooks: ``train_mode()`` (default
    ``trainable.train``), ``evaluate()`` (held-out figures at the end of each period), ``state()`` /
    ``load_state(dict)`` (the trainer's own state saved in, and restored from, checkpoints) and ``after_step()``."""

    trainable: torch.nn.Module
    batch_loss: Callable[[int, BatchShare], dict[str, torch.Tensor]]
    train_mode: Callable[[], object] | None = None
    evaluate: Callable[[], dict[str, float]] | None = None
    state: Callable[[], dict[str, Any]] | None = None
    load_state: Callable[[dict[str, Any]], None] | None = None
    after_step: Callable[[], None] | None = None


@dataclass(frozen=True)
class LoopOptions:
    """How a :class:`Trainer` runs: gradient-norm clipping at ``max_grad_norm``; ``max_non_finite`` non-finite losses
    skipped before training counts as diverged (``None``: the first one raises); the log ``label``, the name and
    digits of the logged loss, a log line every ``log_every`` steps (``None``: none), the loss ``smoothing``, a
    per-period ``progress_bar``, and the ``final_check`` (one more batch after the last step, in eval mode without
    gradients, must give a finite loss: the last update can break the model before any loss shows it)."""

    max_grad_norm: float | None = None
    max_non_finite: int | None = None
    label: str = "train"
    loss_label: str = "loss"
    loss_digits: int = 4
    log_every: int | None = 20
    smoothing: float = 0.05
    progress_bar: bool = False
    final_check: bool = True


class Trainer:
    """The training loop of the module docstring for one ``task`` under one ``plan``, run by :meth:`run`.

    A non-finite global loss raises :class:`TrainingDiverged` (with ``options.max_non_finite`` the step is skipped
    instead - it still counts - and more than that many raise); a non-finite parameter or held-out figure raises too.
    Every rank takes the same branch: the checks are summed over the ranks."""

    def __init__(self, task: TrainingTask, plan: Plan, context: DistributedContext,
                 options: LoopOptions = LoopOptions(), checkpointing: Checkpointing | None = None):
        self.task, self.plan, self.context = task, plan, context
        self.options, self.checkpointing = options, checkpointing
        self.parameters = [p for p in task.trainable.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(self.parameters, lr=plan.schedule.peak)
        self.outcome = LoopOutcome(0, None, plan)
        self.running: float | None = None  # the smoothed loss
        self.step = 0
        self.keys: list[str] | None = None  # the loss names of batch_loss, from its first call
        self.sums: dict[str, float] = {}  # this period's sums of the global losses
        self.elapsed = 0.0  # this run's clock as rank 0 measured it at the end of the last step (all ranks agree)
        self._run_started = self._period_started = time.perf_counter()  # set again when run() starts

    # -------------------------------------------------------------------------------------------------- resuming
    def _resume(self) -> None:
        """Restore network, buffers, optimiser, step, history and the task's state from the checkpoint."""
        checkpointing, trainable = self.checkpointing, self.task.trainable
        assert checkpointing is not None
        payload = _load_checkpoint(checkpointing)
        self.step = _check_checkpoint(payload, checkpointing.path, trainable, self.plan)
        trainable.load_state_dict(payload["trainable"])
        for name, buffer in trainable.named_buffers():  # non-persistent buffers too (power-iteration vectors)
            if name in payload.get("buffers", {}):
                buffer.copy_(payload["buffers"][name])
        try:
            self.optimizer.load_state_dict(payload["optimizer"])
        except (ValueError, KeyError, TypeError, RuntimeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValueError(f"--resume: checkpoint {checkpointing.path} has an unusable optimiser state ({first})") \
                from None
        outcome = self.outcome
        outcome.history, outcome.seconds = list(payload["history"]), float(payload["seconds"])
        outcome.curve, outcome.skipped = list(payload.get("curve", [])), int(payload.get("skipped", 0))
        self.running = payload.get("running")
        if self.task.load_state is not None:
            self.task.load_state(payload.get("state", {}))
        logger.info("%s: resumed from %s after step %d", self.options.label, checkpointing.path, self.step)

    def _save_checkpoint(self) -> None:
        checkpointing, trainable = self.checkpointing, self.task.trainable
        if checkpointing is None or not self.context.is_main:
            return
        outcome = self.outcome
        _save_checkpoint(checkpointing.path, {
            "identity": checkpointing.identity, "trainable": trainable.state_dict(),
            "buffers": dict(trainable.named_buffers()), "optimizer": self.optimizer.state_dict(),
            "step": self.step, "epoch": self.step // self.plan.period, "history": outcome.history,
            "seconds": outcome.seconds, "curve": outcome.curve, "skipped": outcome.skipped,
            "running": self.running, "state": self.task.state() if self.task.state is not None else {}})

    # ------------------------------------------------------------------------------------------------ one step
    def _where(self) -> str:
        plan, step = self.plan, self.step
        return (f"{self.options.label} epoch {step // plan.period + 1}, batch {step % plan.period + 1}"
                if plan.budget == "periods" else f"step {step + 1}")

    def _any_rank(self, flag: bool) -> bool:
        """Whether ``flag`` holds on any rank (every rank gets the same answer)."""
        return float(self.context.sum(torch.tensor([float(flag)], dtype=torch.float64))[0]) > 0

    def _skip_non_finite(self, problem: str | None) -> None:
        """A step whose global loss is not finite: raise, or count it as skipped within ``max_non_finite``."""
        limit = self.options.max_non_finite
        if limit is None:
            raise diverged(self._where(), problem or "the loss became non-finite on another process")
        self.outcome.skipped += 1
        if self.outcome.skipped > limit:
            raise TrainingDiverged(f"training diverged: more than {limit} non-finite losses by step {self.step + 1}; "
                                   "lower --lr (nothing was written)")
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1

    def _update(self, losses: dict[str, torch.Tensor], local: torch.Tensor, weight: float) -> None:
        """The Adam step on this batch's loss, then the divergence check and the period sums and smoothed loss."""
        plan, context, options = self.plan, self.context, self.options
        set_learning_rate(self.optimizer, plan.schedule(self.step, plan.progress(self.step, self.elapsed)))
        self.optimizer.zero_grad(set_to_none=True)
        objective = losses["loss"]
        if context.distributed:  # DDP averages over the ranks: N (b_r / B) loss_r sums to the global mean
            objective = objective * (weight * context.world_size)
        objective.backward()
        if options.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.parameters, options.max_grad_norm)
        self.optimizer.step()
        if self.task.after_step is not None:
            self.task.after_step()
        problem = divergence(module=self.task.trainable)
        global_losses = context.sum(torch.cat([local, torch.tensor([float(problem is not None)],
                                                                   dtype=torch.float64)]))
        if float(global_losses[-1]) > 0:
            raise diverged(self._where(), problem or "a parameter became non-finite on another process")
        assert self.keys is not None
        values = dict(zip(self.keys, global_losses[:-1].tolist()))
        for key, value in values.items():
            self.sums[key] = self.sums.get(key, 0.0) + value
        loss = values["loss"]
        self.running = loss if self.running is None else (1 - options.smoothing) * self.running + \
            options.smoothing * loss

    # ---------------------------------------------------------------------------------------------- one period
    def _end_period(self, steps_done: int) -> float:
        """The period's history record (training means, held-out figures, seconds), its divergence check, the log
        line and the checkpoint; returns the period's seconds."""
        plan, step = self.plan, self.step
        self.context.broadcast_state(self.task.trainable)  # rank 0's batch-norm statistics everywhere
        unit = "epoch" if plan.budget == "periods" else "step"
        record: dict[str, float] = {unit: step // plan.period if plan.budget == "periods" else step}
        record.update({f"train_{k}": v / max(1, steps_done) for k, v in self.sums.items()})
        if self.task.evaluate is not None:
            record.update({f"held_out_{k}": v for k, v in self.task.evaluate().items()})
        problem = divergence(values=record)
        if self._any_rank(problem is not None):
            raise diverged(f"{self.options.label} {unit} {record.get('epoch', step)}",
                           problem or "the evaluation became non-finite on another process")
        now = time.perf_counter()
        period_seconds = now - self._period_started
        self.outcome.seconds += period_seconds
        self._period_started = now
        record["seconds"] = round(self.outcome.seconds, 1)
        self.outcome.history.append(record)
        if plan.budget == "periods":
            logger.info("%s epoch %d: %s", self.options.label, record["epoch"],
                        ", ".join(f"{k}={v:.5g}" for k, v in record.items() if k != "epoch"))
        self._save_checkpoint()
        self.sums = {}
        return period_seconds

    def _refit_budget(self, period_seconds: float, periods_before: int, original_periods: int) -> None:
        """With a time budget in periods: after this run's first and second period, the periods that fit it."""
        plan, context, step = self.plan, self.context, self.step
        timed = step // plan.period - periods_before  # periods of this run
        if plan.budget != "periods" or plan.minutes is None or timed not in (1, 2):
            return
        run_seconds = context.from_main(self._period_started - self._run_started)
        fitting = periods_within_budget(
            plan.minutes * 60, run_seconds, context.from_main(period_seconds), step // plan.period,
            minimum=step // plan.period + (1 if timed == 1 else 0), maximum=original_periods)
        if fitting != plan.periods:
            logger.info("%s: %g min allow %d of %d epochs", self.options.label, plan.minutes, fitting, original_periods)
            plan.periods = fitting

    def _final_check(self) -> None:
        trainable = self.task.trainable
        trainable.eval()
        with torch.no_grad():
            try:
                problem = divergence(loss=self.task.batch_loss(self.step, self.context.share())["loss"])
            except EmptyShareError:
                problem = None
        if self._any_rank(problem is not None):
            raise diverged(f"the end of training (step {self.step})", problem or "non-finite loss on another process")

    def _progress_bar(self, period_start_step: int):
        from tqdm import tqdm

        plan = self.plan
        remaining = min(plan.period, plan.total_steps - period_start_step)
        return tqdm(total=remaining, desc=f"{self.options.label} {'epoch' if plan.budget == 'periods' else 'steps'} "
                    f"{self.step // plan.period + 1}/{plan.periods or '?'}", unit="batch", mininterval=10.0,
                    file=sys.stderr, dynamic_ncols=True, disable=not self.context.is_main)

    # --------------------------------------------------------------------------------------------------- the run
    def run(self) -> LoopOutcome:
        """Train until the plan is finished (resuming first when the checkpointing says so); the outcome."""
        ensure_log_handler()
        task, plan, context, options = self.task, self.plan, self.context, self.options
        set_train_mode: Callable[[], object] = task.train_mode if task.train_mode is not None else task.trainable.train
        if self.checkpointing is not None and self.checkpointing.resume:
            self._resume()
        period_start_step = self.step
        periods_before, original_periods = self.step // plan.period, plan.periods
        module = context.wrap(task.trainable)
        self._run_started = time.perf_counter()
        self._period_started = self._run_started
        bar = None
        try:
            while not plan.finished(self.step, self.elapsed):
                if options.progress_bar and bar is None:
                    bar = self._progress_bar(period_start_step)
                set_train_mode()
                share = context.share()
                losses = module.run(functools.partial(_share_loss, task.batch_loss, task.trainable, self.step, share,
                                                      self.keys))
                self.keys = self.keys or list(losses)
                weight = share.fraction if share.count else 0.0
                local = torch.tensor([float(losses[k].detach()) * weight for k in self.keys], dtype=torch.float64)
                loss_value = float(local[0])
                if self._any_rank(not math.isfinite(loss_value)):
                    self._skip_non_finite(None if math.isfinite(loss_value) else f"the loss became {loss_value}")
                    if plan.budget == "clock":
                        self.elapsed = context.from_main(time.perf_counter() - self._run_started)
                    continue
                self._update(losses, local, weight)
                self.step += 1
                step = self.step
                if plan.budget == "clock" or (options.log_every is not None and step % options.log_every == 0):
                    self.elapsed = context.from_main(time.perf_counter() - self._run_started)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix({k: f"{v / (step - period_start_step):.4g}" for k, v in self.sums.items()},
                                    refresh=False)
                if options.log_every is not None and step % options.log_every == 0:
                    self.outcome.curve.append([step, round(self.running or 0.0, 4)])
                    logger.info("step %d %s %.*f elapsed %.0fs", step, options.loss_label, options.loss_digits,
                                self.running, self.elapsed)
                if step % plan.period == 0 or plan.finished(step, self.elapsed):
                    if bar is not None:
                        bar.close()
                        bar = None
                    period_seconds = self._end_period(step - period_start_step)
                    period_start_step = step
                    self._refit_budget(period_seconds, periods_before, original_periods)
            if options.final_check:
                self._final_check()
        finally:
            if bar is not None:
                bar.close()
            module.release()
        self.outcome.steps, self.outcome.final_loss = self.step, self.running
        return self.outcome
