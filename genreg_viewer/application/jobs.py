"""Reconstruction jobs as the application queues them, and how one runs (no Qt, no threads: the GUI's worker
calls :func:`run_job` on a pool thread and forwards what it reports as queued signals).

A :class:`ReconJob` is a snapshot of the measurement and of the settings chosen when it was queued (later edits of
the mask or noise do not affect it). :func:`run_job` runs it through :func:`genreg_viewer.recon.run_method` with
its ``threading.Event`` as ``cancel`` (checked between iterations), hands :class:`ProgressUpdate` objects to a
callback at most every ``PROGRESS_INTERVAL`` seconds (plus the final state), and returns the finished
:class:`~genreg_viewer.application.runs.RunRecord` with the covariance inspector's decoding already made.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from ..physics import Measurement
from ..recon import Problem, ReconMethod, check_finite_result, get_method, run_method
from .covariance import prepare_for_run
from .runs import RunRecord

logger = logging.getLogger(__name__)

PROGRESS_INTERVAL = 0.125  #: seconds between progress reports (8 Hz: smooth enough, and painting stays cheap)


@dataclass
class ReconJob:
    """One queued reconstruction: a snapshot of the measurement and the settings it runs with."""

    job_id: int
    method: str
    title: str
    params: dict[str, Any]
    iterations: int
    device: str
    measurement: Measurement
    ground_truth: Any  #: torch tensor (1, 1, H, W)
    seed: int
    setting: dict[str, Any]
    cancel: threading.Event = field(default_factory=threading.Event)
    method_instance: ReconMethod | None = None  #: a method object to run instead of ``get_method(method)``
    image_version: int = 0  #: :attr:`ExperimentState.image_version` when queued (a newer image drops the result)
    #: the :class:`~genreg_viewer.weight_sets.WeightSet` chosen when queued (None: the bundled default set)
    weight_set: Any = None

    def report_every(self) -> int:
        """Report about 200 times per run (metrics are computed at every report)."""
        return max(1, self.iterations // 200)


@dataclass
class ProgressUpdate:
    """What the live view needs: the newest image and the curve points since the previous update."""

    iteration: int
    total: int | None
    elapsed: float
    eta: float | None
    image: np.ndarray
    points: list[tuple[int, float | None, float | None, float | None]]  #: (iteration, objective, psnr, ssim)
    final: bool = False


def run_job(job: ReconJob, on_progress: Callable[[ProgressUpdate], None]) -> RunRecord:
    """Run ``job`` to its end (or until ``job.cancel`` is set) and return its record; ``on_progress`` receives the
    throttled progress updates on the calling thread. Errors of the method propagate (the caller reports them)."""
    pending: list[tuple] = []
    last_report = 0.0

    def on_state(state) -> None:
        nonlocal last_report
        pending.append((state.iteration, state.objective, state.psnr, state.ssim))
        now = time.perf_counter()
        if state.final or now - last_report >= PROGRESS_INTERVAL:
            last_report = now
            update = ProgressUpdate(state.iteration, state.total_iterations, state.elapsed, state.eta,
                                    state.image_numpy().copy(), list(pending), state.final)
            pending.clear()
            on_progress(update)

    method = job.method_instance or get_method(job.method)
    problem = Problem(job.measurement, job.ground_truth, seed=job.seed, device=torch.device(job.device),
                      weight_set=job.weight_set)
    result = run_method(method, problem, job.params, job.iterations, cancel=job.cancel, callback=on_state,
                        report_every=job.report_every())
    check_finite_result(result)  # a diverged run is a dialog, not a run with a NaN score
    record = RunRecord.from_result(result, job.job_id, job.title, job.setting)
    if not job.cancel.is_set():
        try:  # the covariance inspector's first click on this run is then as fast as the later ones
            record.covariance = prepare_for_run(record, job.weight_set)
        except Exception as exc:  # noqa: BLE001 - the inspector decodes the run itself when it is shown
            logger.warning("the covariance inspector could not prepare run %s: %s", job.job_id, exc, exc_info=exc)
    return record


def report_exception(exc: BaseException) -> str:
    """Log unexpected errors with their traceback (user errors are ValueErrors) and return the dialog text."""
    if not isinstance(exc, (ValueError, KeyError)):
        logger.error("unexpected error in a reconstruction: %s", user_message(exc), exc_info=exc)
    return user_message(exc)


def user_message(exc: BaseException) -> str:
    """One clear line for a dialog: the message of a user error, or the exception type for a bug."""
    text = str(exc).strip() or exc.__class__.__name__
    if isinstance(exc, (ValueError, KeyError, RuntimeError, OSError)):
        return text.strip("'\"")
    return f"{exc.__class__.__name__}: {text}"
