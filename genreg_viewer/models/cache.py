"""The process-wide cache of loaded networks: one per weights file version, device and loader, shared by callers.

A network is loaded once for the key ``(resolved weights stem, modification times of its tensor and JSON files,
device, loader name)``: a weights file rewritten on disk (a new training run, ``genreg weights --copy-to``) is
loaded again, an unchanged one never. Loading happens under one lock, so two threads asking for the same network
get the same object. Cached networks are in eval mode with frozen parameters and shared: callers must not modify
them (copy first, as the educated deep image prior does).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Callable, TypeVar

import torch

from ..weight_sets import note_network
from .weights import WeightsError, weights_paths, weights_stem

T = TypeVar("T")

_CACHE: dict[tuple, Any] = {}
_LOCK = threading.RLock()  # re-entrant: a loader may load another cached network


def weights_version(stem: str | os.PathLike, missing_hint: str = "") -> tuple[Path, tuple[int, int]]:
    """The resolved stem and the modification times (ns) of its tensor and JSON files; a :class:`WeightsError`
    naming the files (and ``missing_hint``, e.g. the command that creates them) when either is missing."""
    stem = weights_stem(stem)
    tensors, meta = weights_paths(stem)
    try:
        return stem.resolve(), (tensors.stat().st_mtime_ns, meta.stat().st_mtime_ns)
    except FileNotFoundError:
        hint = f"; {missing_hint}" if missing_hint else ""
        raise WeightsError(f"weights {tensors} (and {meta.name}) not found{hint}") from None


def cached_model(stem: str | os.PathLike, device: torch.device | str, loader: str, load: Callable[[], T],
                 missing_hint: str = "") -> T:
    """``load()`` once per weights file version, device and ``loader`` name, then the same object every time."""
    resolved, version = weights_version(stem, missing_hint)
    note_network(resolved)  # for weight_sets.record_networks (genreg recon --json: weights.networks)
    key = (str(resolved), version, str(torch.device(device)), loader)
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = load()
        return _CACHE[key]


def clear_model_cache() -> None:
    """Forget every cached network (tests; freeing memory)."""
    with _LOCK:
        _CACHE.clear()
