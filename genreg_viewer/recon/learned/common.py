"""Shared pieces of the learned baselines: locating weight files and caching the loaded networks."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, TypeVar

import torch

from ...models.cache import cached_model
from ...models.weights import (WeightsError, check_before_building, load_state_into, load_weights, weights_exist,
                                     weights_paths, weights_stem)
from ...weight_sets import availability_weight_set, find_weights


def resolve_weights(name: str, weight_set=None, *, record: bool | None = None) -> Path:
    """A bare name (``dncnn``) means ``NAME`` in ``weight_set`` (a run passes its problem's; default: the bundled
    default set) or its fallback, normally ``resources/weights``; anything with a folder or suffix is a path.
    ``record``: see :func:`~genreg_viewer.weight_sets.find_weights`."""
    text = str(name).strip()
    if not text:
        raise WeightsError("no weights file given")
    path = Path(text).expanduser()
    if path.parent == Path(".") and not path.suffix:
        path = find_weights(text, weight_set, record=record)[0]
    return weights_stem(path)


def weights_status(name: str, train_hint: str, weight_set=None) -> tuple[bool, str]:
    """``(True, '')`` when the weights exist in ``weight_set`` (default: the set availability checks look in,
    :func:`~genreg_viewer.weight_sets.availability_weight_set`) or its fallback, else ``(False, reason with the
    command that creates them)``. Not counted as a use by :func:`~genreg_viewer.weight_sets.record_networks`."""
    try:
        stem = resolve_weights(name, weight_set or availability_weight_set(), record=False)
    except WeightsError as exc:
        return False, str(exc)
    if not weights_exist(stem):
        tensors, _ = weights_paths(stem)
        return False, f"weights {tensors} not found; create them with '{train_hint}'"
    return True, ""


ModuleT = TypeVar("ModuleT", bound=torch.nn.Module)


def load_network(name: str, build: Callable[[dict], ModuleT], device: torch.device,
                 weight_set=None) -> tuple[ModuleT, dict, dict]:
    """Load (once per file version and device, :func:`~genreg_viewer.models.cache.cached_model`) the network in
    weights ``name``: ``build(config)`` creates the module, the stored tensors are checked against it and copied in.
    Returns ``(module, config, info)``; the module is in eval mode with frozen parameters and shared between
    callers, who must not modify it. Bare names are looked up in ``weight_set`` (see :func:`resolve_weights`)."""
    stem = resolve_weights(name, weight_set)

    def load() -> tuple[ModuleT, dict, dict]:
        state, config, info = load_weights(stem)
        try:
            check_before_building(build, config, state, str(weights_paths(stem)[0]), config)  # nothing allocated yet
            with torch.random.fork_rng(devices=[]):  # building draws initial weights: leave the caller's RNG alone
                module = build(config)
        except (TypeError, ValueError, KeyError, OverflowError) as exc:
            raise WeightsError(f"weights config {weights_paths(stem)[1]} cannot build the network: {exc}") from exc
        load_state_into(module, state, str(weights_paths(stem)[0]), config)
        module.eval().requires_grad_(False)
        return module.to(device), config, info

    return cached_model(stem, device, f"{build.__module__}.{build.__qualname__}", load)


def data_objective(problem, image: torch.Tensor) -> float:
    """``1/2 ||A x - y||^2`` summed over the batch (the data term every method reports)."""
    return 0.5 * float(problem.operator.data_misfit(image, problem.y).sum())
