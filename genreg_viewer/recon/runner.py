"""Running a method: progress states with metrics, thinning and cancellation (its parameters, tuned defaults
included, come from :func:`genreg_viewer.tuning.run_params`; grid searches live in :mod:`genreg_viewer.tuning`)."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Iterator

import numpy as np
import torch

from .. import metrics
from ..tuning import run_params
from .base import Problem, ProgressState, ReconMethod, ReconResult, RunExtras
from .registry import get_method

CancelCheck = Callable[[], bool] | threading.Event | None


def _is_cancelled(cancel: CancelCheck) -> bool:
    if cancel is None:
        return False
    if isinstance(cancel, threading.Event):
        return cancel.is_set()
    return bool(cancel())


def _metrics(image: torch.Tensor, truth: torch.Tensor | None) -> tuple[float | None, float | None]:
    if truth is None:
        return None, None
    clipped = image.detach().clamp(0, 1)
    return float(metrics.psnr(clipped, truth).mean()), float(metrics.ssim(clipped, truth).mean())


def iterate_progress(
    method: ReconMethod | str,
    problem: Problem,
    params: dict[str, Any] | None = None,
    iterations: int | None = None,
    report_every: int = 1,
    cancel: CancelCheck = None,
) -> Iterator[ProgressState]:
    """Run ``method`` and yield a :class:`ProgressState` every ``report_every`` iterations and at the end.

    ``report_every = 0`` yields only the final state. ``cancel`` (an Event or a callable) is checked between
    iterations; when it fires the method's generator is closed and a final state with ``cancelled`` set is
    yielded. The final state also carries the resolved ``params``; every state's ``extras`` are the method's step
    extras as :class:`~genreg_viewer.recon.base.RunExtras` (checked and typed). Steps numbered 0 are a method's
    set-up (e.g. a warm start): checked for cancellation, not reported.
    Metrics are computed on the image clipped to [0, 1] against ``problem.ground_truth``.
    """
    if isinstance(method, str):
        method = get_method(method)
    ok, why = method.available()
    if not ok:
        raise RuntimeError(f"method {method.name!r} is not available: {why}")
    resolved = run_params(method, problem, params)
    total = int(iterations) if iterations is not None else method.default_iterations
    if total < 1:
        raise ValueError("iterations must be at least 1")
    start = time.perf_counter()
    steps = method.iterate(problem, resolved, total)
    last = None
    cancelled = False
    try:
        for step in steps:
            last = step
            if _is_cancelled(cancel):
                cancelled = True
                break
            if report_every and 0 < step.iteration < total and step.iteration % report_every == 0:
                psnr, ssim = _metrics(step.image, problem.ground_truth)
                yield ProgressState(
                    step.iteration, total, step.image.detach(), step.objective,
                    time.perf_counter() - start, psnr, ssim, RunExtras.from_entries(step.extras),
                )
    finally:
        close = getattr(steps, "close", None)  # a generator: run its cleanup now
        if close is not None:
            close()
    if last is None:
        raise RuntimeError(f"method {method.name!r} produced no iterate")
    if problem.device.type == "cuda":
        torch.cuda.synchronize(problem.device)
    psnr, ssim = _metrics(last.image, problem.ground_truth)
    yield ProgressState(
        last.iteration, total, last.image.detach(), last.objective, time.perf_counter() - start,
        psnr, ssim, RunExtras.from_entries(last.extras), final=True, cancelled=cancelled, params=resolved,
    )


def run_method(
    method: ReconMethod | str,
    problem: Problem,
    params: dict[str, Any] | None = None,
    iterations: int | None = None,
    cancel: CancelCheck = None,
    callback: Callable[[ProgressState], None] | None = None,
    report_every: int = 0,
) -> ReconResult:
    """Run to the end (or cancellation) and return a :class:`ReconResult` with the history of reported states."""
    if isinstance(method, str):
        method = get_method(method)
    history: list[dict[str, Any]] = []
    final: ProgressState | None = None
    for state in iterate_progress(method, problem, params, iterations, report_every, cancel):
        history.append(
            {"iteration": state.iteration, "objective": state.objective, "psnr": state.psnr,
             "ssim": state.ssim, "elapsed": state.elapsed}
        )
        if callback is not None:
            callback(state)
        if state.final:
            final = state
    assert final is not None and final.params is not None
    return ReconResult(
        method=method.name,
        image=final.image.detach().float().cpu(),
        params=final.params,
        seed=problem.seed,
        device=str(problem.device),
        seconds=final.elapsed,
        iterations=final.iteration,
        history=history,
        extras=final.extras.on_cpu(),
        psnr=final.psnr,
        ssim=final.ssim,
        cancelled=final.cancelled,
    )


class NonFiniteResultError(ValueError):
    """A finished run whose image or posterior std map holds NaN or infinite values: its parameters, weights or data
    made the method diverge. Such a result is an error, never reported as a score."""


def check_finite_result(result: ReconResult) -> ReconResult:
    """``result`` when its image (and its ``std_map``, if any) are finite; :class:`NonFiniteResultError` (one line
    naming the method and what diverged) otherwise. A cancelled run is returned as it is."""
    if result.cancelled:
        return result
    bad = [] if bool(torch.isfinite(result.image).all()) else ["image"]
    std = result.extras.std_map
    if isinstance(std, torch.Tensor) and not bool(torch.isfinite(std).all()):
        bad.append("posterior std map")
    elif isinstance(std, np.ndarray) and not bool(np.isfinite(std).all()):
        bad.append("posterior std map")
    if bad:
        raise NonFiniteResultError(
            f"{result.method} diverged: NaN or infinite values in its {' and '.join(bad)} after "
            f"{result.iterations} iteration(s){_short(result.params)}; change the parameters or the weights")
    return result


def _short(params: dict[str, Any]) -> str:
    """`` with a=1, b=2`` (at most 200 characters), or nothing for no parameters."""
    text = ", ".join(f"{k}={v}" for k, v in params.items())
    return f" with {text if len(text) <= 200 else text[:197] + '...'}" if text else ""
