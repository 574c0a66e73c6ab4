"""The process-wide cache of loaded networks: one per weights file version, device and loader, shared by callers.

A network is loaded once for the key ``(resolved weights stem, modification times of its tensor and JSON files and
of the base files it borrows tensors from, device, loader name)``: a weights file rewritten on disk (a new training
run, ``genreg weights --copy-to``) is loaded again, an unchanged one never. Every trained network goes through it:
the learned baselines (:func:`genreg_viewer.recon.learned.common.load_network`), the flow
(:func:`genreg_viewer.recon.priors.flow_prior.bundled_flow`) and the VAEs
(:func:`genreg_viewer.models.vae.cached_generative_model`). Loading happens under one lock, so two threads asking
for the same network get the same object. Cached networks are in eval mode with frozen parameters and shared:
callers must not modify them (copy first, as the educated deep image prior does).
"""

from __future__ import annotations

import json
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
#: ``{(JSON file, its modification time): the base stem name it names or None}``: the JSON is read once per version
_BASES: dict[tuple[str, int], str | None] = {}


def _base_name(meta: Path, meta_time: int) -> str | None:
    """The ``base.stem`` a weights JSON names (see :mod:`genreg_viewer.models.weights`), None when it has none or
    cannot be read (the load itself then reports the problem)."""
    key = (str(meta), meta_time)
    if key not in _BASES:
        try:
            base = json.loads(meta.read_text(encoding="utf-8")).get("base")
            _BASES[key] = str(base["stem"]) if isinstance(base, dict) and "stem" in base else None
        except (OSError, ValueError, AttributeError, TypeError, RecursionError):
            _BASES[key] = None
    return _BASES[key]


def weights_version(stem: str | os.PathLike, missing_hint: str = "") -> tuple[Path, tuple[int, ...]]:
    """The resolved stem and the modification times (ns) of its tensor and JSON files, followed by those of the base
    file it borrows tensors from (0 where missing: the load reports it); a :class:`WeightsError` naming the files
    (and ``missing_hint``, e.g. the command that creates them) when either of its own files is missing."""
    stem = weights_stem(stem)
    tensors, meta = weights_paths(stem)
    try:
        version: tuple[int, ...] = (tensors.stat().st_mtime_ns, meta.stat().st_mtime_ns)
    except FileNotFoundError:
        hint = f"; {missing_hint}" if missing_hint else ""
        raise WeightsError(f"weights {tensors} (and {meta.name}) not found{hint}") from None
    base = _base_name(meta, version[1])
    if base:
        base_paths: tuple[Path, ...]
        try:
            base_paths = weights_paths(stem.with_name(base))
        except ValueError:  # not a file name (a separator, empty): the load rejects it
            base_paths = ()
        for path in base_paths:
            try:
                version += (path.stat().st_mtime_ns,)
            except (OSError, ValueError):
                version += (0,)
    return stem.resolve(), version


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
        _BASES.clear()
