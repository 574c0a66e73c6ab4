"""Device selection: CUDA when present, else CPU."""

from __future__ import annotations

import os
import re

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


def background_thread_count() -> int:
    """Torch intra-op threads for reconstructions run on a background thread (the GUI): ``GENREG_THREADS`` or 1.

    Measured on the 2-core CPU machine (PyTorch's OpenMP backend): ops called from a thread other than the main one
    pay a large per-op parallel overhead, so a 128x128 mean+covar reconstruction took 4.2 s on a worker thread with
    2 intra-op threads against 2.4 s with 1 (1.9 s on the main thread with 2). Larger machines may set more.
    """
    value = os.environ.get("GENREG_THREADS", "").strip()
    if not value:
        return 1
    try:
        count = int(value)
    except ValueError:
        raise ValueError(f"GENREG_THREADS must be a positive integer, got {value!r}") from None
    if count < 1:
        raise ValueError(f"GENREG_THREADS must be a positive integer, got {value!r}")
    return count


def configure_background_threads() -> int:
    """Set torch's (process-wide) intra-op thread count for background reconstructions; returns it."""
    count = background_thread_count()
    torch.set_num_threads(count)
    return count
