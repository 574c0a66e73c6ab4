"""Background work on superqt workers: reconstructions (a queue), sweeps and covariance-model queries.

Each owner runs its work as superqt ``FunctionWorker``/``GeneratorWorker`` objects on a private one-thread
``QThreadPool`` (jobs run one after the other, in the order submitted); the GUI hears of them only through queued
signals, so the event loop never blocks. Reconstructions run through :func:`genreg_viewer.recon.run_method` with a
``threading.Event`` as ``cancel``: the runner checks it between iterations, so Cancel stops within one iteration.
Progress reaches the GUI at most every ``application.jobs.PROGRESS_INTERVAL`` seconds (plus the final state).
Every worker applies torch's thread count on its own thread first (OpenMP keeps the count per thread).

Shutdown (the window closing) is two steps: every owner's ``shutdown(wait_ms=0)`` cancels its work, drops what is
queued and from then on ignores the signals its running worker still sends (a cancelled run reports its last state
late); then :func:`wait_for_threads` waits for all pools with one deadline. Work stuck in a long operation does not
keep the application alive: :func:`genreg_viewer.gui.app.main` exits without it (see there).
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from typing import Any, Callable

import torch
from PyQt6.QtCore import QObject, QThreadPool, pyqtSignal
from superqt.utils import create_worker

from ..application.jobs import ProgressUpdate, ReconJob, report_exception, run_job
from ..application.runs import RunRecord
from ..device import configure_background_threads

logger = logging.getLogger(__name__)


def _apply_thread_count_here() -> None:
    """Apply torch's process-wide intra-op thread count on the calling thread too: OpenMP keeps the count per
    thread, and a new thread starts with OpenMP's default (every core), which on a busy 2-core machine made a worker's
    runs up to ten times slower than the count chosen by :func:`configure_background_threads`."""
    torch.set_num_threads(torch.get_num_threads())


def wait_for_threads(timeout_ms: int) -> bool:
    """Wait for the background work of every worker pool, ``timeout_ms`` in all (not per pool); True when none is
    left running."""
    deadline = time.monotonic() + timeout_ms / 1000
    for pool in _Pool.alive():
        pool.waitForDone(max(0, int((deadline - time.monotonic()) * 1000)))
    return not running_threads()


def running_threads() -> list[str]:
    """Names of the worker pools with work still running."""
    return sorted(pool.objectName() for pool in _Pool.alive() if pool.activeThreadCount() > 0)


@atexit.register
def _stop_threads() -> None:
    wait_for_threads(10_000)


class ReconWorker(QObject):
    """Runs one job (called on a pool thread by :class:`ReconQueue`); its signals reach the GUI thread queued."""

    started = pyqtSignal(int)
    progress = pyqtSignal(int, object)  # job id, ProgressUpdate
    finished = pyqtSignal(int, object)  # job id, RunRecord
    failed = pyqtSignal(int, str)
    skipped = pyqtSignal(int)  # cancelled before it started

    def run(self, job: ReconJob) -> None:
        _apply_thread_count_here()
        if job.cancel.is_set():
            self.skipped.emit(job.job_id)
            return
        self.started.emit(job.job_id)
        try:
            record = run_job(job, lambda update: self.progress.emit(job.job_id, update))
        except Exception as exc:  # noqa: BLE001 - shown as a dialog; the worker stays alive for the next job
            self.failed.emit(job.job_id, report_exception(exc))
            return
        self.finished.emit(job.job_id, record)


class ReconQueue(QObject):
    """Submit, cancel and follow reconstructions: each job is a superqt ``FunctionWorker`` on a one-thread pool, so
    jobs run one after the other in the order submitted."""

    queueChanged = pyqtSignal()
    jobStarted = pyqtSignal(object)  # ReconJob
    jobProgress = pyqtSignal(object, object)  # ReconJob, ProgressUpdate
    jobFinished = pyqtSignal(object, object)  # ReconJob, RunRecord
    jobFailed = pyqtSignal(object, str)  # ReconJob, message

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.pending: list[ReconJob] = []
        self.current: ReconJob | None = None
        self.closed = False  #: after :meth:`shutdown`: no new jobs, and the worker's late signals are dropped
        try:  # ops called off the main thread are much faster with few intra-op threads (see the function)
            configure_background_threads()
        except ValueError as exc:
            logger.warning("genreg-viewer: %s; using 1 thread", exc)
            torch.set_num_threads(1)
        self.pool = _Pool.new("reconstruction", self)
        self._worker = ReconWorker()  # lives on the GUI thread; its signals are emitted from the pool's thread
        self._worker.started.connect(self._on_started)
        self._worker.progress.connect(self._on_progress)
        self._worker.finished.connect(self._on_finished)
        self._worker.failed.connect(self._on_failed)
        self._worker.skipped.connect(self._on_skipped)

    @property
    def busy(self) -> bool:
        return self.current is not None or bool(self.pending)

    def submit(self, job: ReconJob) -> None:
        if self.closed:
            return
        self.pending.append(job)
        worker = create_worker(self._worker.run, job, _start_thread=False, _ignore_errors=True)
        self.pool.start(worker)
        self.queueChanged.emit()

    def cancel_current(self) -> bool:
        """Ask the running job to stop after its current iteration; False when nothing runs."""
        if self.current is None:
            return False
        self.current.cancel.set()
        return True

    def remove(self, job_id: int) -> None:
        """Drop a queued job (or cancel it when it is already running)."""
        if self.current is not None and self.current.job_id == job_id:
            self.cancel_current()
            return
        for job in self.pending:
            if job.job_id == job_id:
                job.cancel.set()
                self.pending.remove(job)
                self.queueChanged.emit()
                return

    def cancel_all(self) -> None:
        for job in self.pending:
            job.cancel.set()
        self.pending.clear()
        self.cancel_current()
        self.queueChanged.emit()

    def shutdown(self, timeout_ms: int = 5000) -> bool:
        """Cancel every job, stop listening to the worker and stop its thread (waiting ``timeout_ms``, 0: not at
        all); True when the thread has ended."""
        self.cancel_all()
        self.closed = True
        self.current = None  # cancelled; what it reports from now on is dropped
        self.pool.clear()
        return self.pool.waitForDone(timeout_ms) if timeout_ms > 0 else self.pool.activeThreadCount() == 0

    # ------------------------------------------------------------ worker events
    def _find(self, job_id: int) -> ReconJob | None:
        if self.closed:  # a cancelled job reports late, after the window has gone
            return None
        if self.current is not None and self.current.job_id == job_id:
            return self.current
        return next((j for j in self.pending if j.job_id == job_id), None)

    def _on_started(self, job_id: int) -> None:
        job = self._find(job_id)
        if job is None:
            return
        self.pending.remove(job)
        self.current = job
        self.queueChanged.emit()
        self.jobStarted.emit(job)

    def _on_progress(self, job_id: int, update: ProgressUpdate) -> None:
        if not self.closed and self.current is not None and self.current.job_id == job_id:
            self.jobProgress.emit(self.current, update)

    def _done(self, job_id: int) -> ReconJob | None:
        job = self._find(job_id)
        if job is None:
            return None
        if job is self.current:
            self.current = None
        self.queueChanged.emit()
        return job

    def _on_finished(self, job_id: int, record: RunRecord) -> None:
        job = self._done(job_id)
        if job is not None:
            self.jobFinished.emit(job, record)

    def _on_failed(self, job_id: int, message: str) -> None:
        job = self._done(job_id)
        if job is not None:
            self.jobFailed.emit(job, message)

    def _on_skipped(self, job_id: int) -> None:
        if not self.closed:
            self.queueChanged.emit()


class _Pool:
    """The single-thread pools of :class:`WorkerThread` and :class:`SweepWorker` (weakly held: a pool lives as long
    as its owner), so that closing the window can wait for all background work with one deadline."""

    pools: "weakref.WeakSet[QThreadPool]" = weakref.WeakSet()

    @classmethod
    def alive(cls) -> list[QThreadPool]:
        """The pools whose Qt object still exists."""
        pools = []
        for pool in list(cls.pools):
            try:
                pool.objectName()
            except RuntimeError:  # deleted with its owner
                continue
            pools.append(pool)
        return pools

    @classmethod
    def new(cls, name: str, parent: QObject) -> QThreadPool:
        pool = QThreadPool(parent)
        pool.setObjectName(name)
        pool.setMaxThreadCount(1)  # one task at a time, in the order submitted
        cls.pools.add(pool)
        return pool


def _with_thread_count(function: Callable[[], Any]) -> Callable[[], Any]:
    def run() -> Any:
        _apply_thread_count_here()
        return function()

    return run


class WorkerThread(QObject):
    """Runs callables one after the other, each as a superqt ``FunctionWorker`` on a private one-thread pool, and
    reports ``done(tag, result)`` or ``failed(tag, message)`` on the GUI thread until :meth:`shutdown`.

    Used for short jobs that must not block the GUI (loading a model, computing a covariance row); the caller
    coalesces requests itself (see the covariance inspector). A tag is any object that names the call to its owner
    (the covariance inspector's :class:`~genreg_viewer.application.covariance.CovarianceTask`)."""

    done = pyqtSignal(object, object)  # tag, result
    failed = pyqtSignal(object, str)  # tag, message

    def __init__(self, name: str, parent: QObject | None = None):
        super().__init__(parent)
        self.closed = False
        self.pool = _Pool.new(name, self)

    def submit(self, tag: Any, function: Callable[[], Any]) -> None:
        if self.closed:
            return
        worker = create_worker(_with_thread_count(function), _start_thread=False, _ignore_errors=True)
        worker.returned.connect(lambda result, tag=tag: self._relay_done(tag, result))
        worker.errored.connect(lambda exc, tag=tag: self._relay_failed(tag, exc))
        self.pool.start(worker)

    def shutdown(self, timeout_ms: int = 5000) -> bool:
        """Drop queued calls and every later result; wait up to ``timeout_ms`` (0: not at all) for the running one;
        True when nothing runs any more."""
        self.closed = True
        self.pool.clear()
        return self.pool.waitForDone(timeout_ms) if timeout_ms > 0 else self.pool.activeThreadCount() == 0

    def _relay_done(self, tag: Any, result: Any) -> None:
        if not self.closed:
            self.done.emit(tag, result)

    def _relay_failed(self, tag: Any, exc: BaseException) -> None:
        if not self.closed:
            self.failed.emit(tag, report_exception(exc))


def _sweep_points(spec, cancel: threading.Event):
    """The points of ``spec`` as they finish (a generator: superqt's ``GeneratorWorker`` yields each to the GUI)."""
    from ..application.sweeps import run_sweep

    _apply_thread_count_here()
    yield from run_sweep(spec, cancel)


class SweepWorker(QObject):
    """Runs a :class:`~genreg_viewer.application.sweeps.SweepSpec` as a superqt ``GeneratorWorker`` (one point per
    ``yielded``) on a private one-thread pool; its signals are relayed until :meth:`shutdown`."""

    point = pyqtSignal(object)  # SweepPoint
    finished = pyqtSignal(bool)  # cancelled
    failed = pyqtSignal(str)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.cancel = threading.Event()
        self.closed = False
        self.pool = _Pool.new("sweep", self)

    def start(self, spec) -> None:
        if self.closed:
            return
        self.cancel.clear()
        worker = create_worker(_sweep_points, spec, self.cancel, _start_thread=False, _ignore_errors=True)
        worker.yielded.connect(self._relay_point)
        worker.returned.connect(lambda _result: self._relay_finished(self.cancel.is_set()))
        worker.errored.connect(self._relay_failed)
        self.pool.start(worker)

    def shutdown(self, timeout_ms: int = 5000) -> bool:
        self.cancel.set()
        self.closed = True
        return self.pool.waitForDone(timeout_ms) if timeout_ms > 0 else self.pool.activeThreadCount() == 0

    def _relay_point(self, point) -> None:
        if not self.closed:
            self.point.emit(point)

    def _relay_finished(self, cancelled: bool) -> None:
        if not self.closed:
            self.finished.emit(cancelled)

    def _relay_failed(self, exc: BaseException) -> None:
        if not self.closed:
            self.failed.emit(report_exception(exc))
