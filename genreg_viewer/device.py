"""Device selection: CUDA when present, else CPU."""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Sequence

import torch


def default_device() -> torch.device:
    """``cuda`` when a GPU is visible, otherwise ``cpu``."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


#: the device names :func:`resolve_device` accepts
DEVICE_NAMES = "cpu, cuda, cuda:N, mps or auto"
_DEVICE_PATTERN = re.compile(r"cpu|cuda(:\d{1,4})?|mps")


def resolve_device(name: str | torch.device | None) -> torch.device:
    """Turn ``None``/``"auto"``/``"cpu"``/``"cuda"``/``"cuda:1"``/``"mps"`` into a device, with a clear error
    for any other name (``meta``, ``cuda:x``, ...) and when the device asked for is not available."""
    if name is None or (isinstance(name, str) and name.strip().lower() == "auto"):
        return default_device()
    if isinstance(name, torch.device):
        device = name
    else:
        text = str(name).strip().lower()
        if not _DEVICE_PATTERN.fullmatch(text):
            shown = repr(name) if len(str(name)) <= 40 else repr(str(name)[:40] + "...")
            raise ValueError(f"unknown device {shown}; use {DEVICE_NAMES}")
        device = torch.device(text)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("CUDA was requested but no CUDA device is available; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"there is no CUDA device {device.index} ({torch.cuda.device_count()} visible); "
                             f"use cuda:0 .. cuda:{torch.cuda.device_count() - 1}")
    elif device.type == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise ValueError("MPS (Apple GPU) was requested but is not available; use --device cpu")
    elif device.type != "cpu":
        raise ValueError(f"unknown device {str(device)!r}; use {DEVICE_NAMES}")
    return device


#: one intra-op thread per this many pixels of the problem (batch x height x width): below 16 slices of 128x128 one
#: thread is used. Small ops gain little from a second thread and lose badly when the cores are busy
#: (``benchmarks/bench_threads.py``: README, "Threads").
PIXELS_PER_THREAD = 16 * 128 * 128


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


#: how long :func:`busy_cores` watches the CPU counters (only for problems large enough to want a second thread)
BUSY_SAMPLE_SECONDS = 0.05


def _cpu_counters() -> tuple[float, float, int] | None:
    """``(busy, total, cpus)`` jiffies from ``/proc/stat`` (Linux), or ``None``."""
    try:
        with open("/proc/stat", encoding="ascii") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return None
    values = [float(v) for v in lines[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0.0)  # idle + iowait
    cpus = sum(1 for line in lines if line.startswith("cpu") and line[3:4].isdigit())
    return sum(values) - idle, sum(values), max(1, cpus)


def busy_cores() -> float:
    """Cores busy with other work: the larger of the one-minute load average and the busy share of all CPUs over
    the next :data:`BUSY_SAMPLE_SECONDS` (this process sleeps meanwhile; catches a neighbour that just started,
    which the load average shows only after a minute). 0 where neither is available."""
    try:
        average = os.getloadavg()[0]
    except (AttributeError, OSError):
        average = 0.0
    before = _cpu_counters()
    if before is None:
        return average
    time.sleep(BUSY_SAMPLE_SECONDS)
    after = _cpu_counters()
    if after is None or after[1] <= before[1]:
        return average
    now = (after[0] - before[0]) / (after[1] - before[1]) * after[2]
    return max(average, now)


def _idle_cores(cores: int) -> int:
    """Usable cores not busy with other work (at least 1)."""
    return max(1, min(cores, int(cores - busy_cores() + 0.5)))


def thread_count_from_environment() -> int | None:
    """``GENREG_THREADS`` as a positive integer, or ``None`` when it is not set (a clear error for bad text)."""
    value = os.environ.get("GENREG_THREADS", "").strip()
    if not value:
        return None
    try:
        count = int(value)
    except ValueError:
        raise ValueError(f"GENREG_THREADS must be a positive integer, got {value!r}") from None
    if count < 1:
        raise ValueError(f"GENREG_THREADS must be a positive integer, got {value!r}")
    return check_thread_count(count, "GENREG_THREADS")


def default_thread_count(shape: Sequence[int] | None = None) -> int:
    """Torch intra-op threads for a problem of ``shape`` (e.g. ``(B, 1, H, W)``; ``None``: one slice).

    ``GENREG_THREADS`` when set; otherwise ``min(ceil(pixels / PIXELS_PER_THREAD), usable cores, idle cores)`` with
    idle cores = usable cores - :func:`busy_cores` (rounded, at least 1; asked only when more than one thread is
    wanted). OpenMP threads spin at barriers:
    with a second thread on a busy core every op waits for a time slice, which makes small problems many times
    slower, and they gain little from a second thread even on idle cores (``benchmarks/bench_threads.py`` measures
    both; README, "Threads").
    """
    configured = thread_count_from_environment()
    if configured is not None:
        return configured
    pixels = 128 * 128 if shape is None else max(1, math.prod(int(n) for n in shape))
    wanted = max(1, math.ceil(pixels / PIXELS_PER_THREAD)) if pixels > PIXELS_PER_THREAD else 1
    cores = _usable_cores()
    if wanted == 1 or cores == 1:
        return 1
    return max(1, min(wanted, cores, _idle_cores(cores)))


#: most torch CPU threads a command may ask for (``--threads 100000`` aborted inside libgomp, which cannot start
#: that many)
MAX_THREADS = 256


def check_thread_count(value, what: str = "--threads") -> int:
    """``value`` as an ``int`` in ``[1, MAX_THREADS]``; a ``ValueError`` naming ``what`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_THREADS:
        raise ValueError(f"{what} must be an integer from 1 to {MAX_THREADS}, got {value!r}")
    return value


def configure_threads(threads: int | None = None, shape: Sequence[int] | None = None) -> int:
    """Set torch's (process-wide) intra-op thread count: ``threads`` (``--threads``) when given, else
    :func:`default_thread_count` for ``shape``. Returns the count; a clear error for a count below 1."""
    if threads is None:
        count = default_thread_count(shape)
    else:
        count = check_thread_count(threads)
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
    return count


def background_thread_count() -> int:
    """Threads for reconstructions run on a background thread (the app): :func:`default_thread_count` of one slice.

    Ops called from a thread other than the main one pay a larger per-op parallel overhead, so one slice runs on
    one thread there unless ``GENREG_THREADS`` says otherwise.
    """
    return default_thread_count(None)


def configure_background_threads() -> int:
    """Set torch's (process-wide) intra-op thread count for background reconstructions; returns it."""
    return configure_threads(None, None)
