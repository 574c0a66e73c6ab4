"""Variational network reconstruction (Hammernik et al. 2018), supervised for fixed sampling settings.

A variational network is trained for one mask and noise level. The bundled networks cover the paper's three settings
(25 radial spokes with sigma 0.05 and 0.0125, 125 spokes with sigma 0.05); for other data the method runs the
trained network *nearest* to the request (and says which in ``extras['trained_setting']``), using the actual forward
operator in its data-consistency steps. Distance between settings::

    d = |ln(f / f_t)| + |ln((sigma + 0.01) / (sigma_t + 0.01))| + (0 if same mask pattern else 0.1)

with ``f`` the sampling fractions (``0.01`` keeps noise-free data finite; the last term prefers the exact trained
mask among masks of equal coverage).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterator

import torch

from ...models.varnet import VariationalNetwork
from ...models.weights import WeightsError, read_weights_json
from ...weight_sets import availability_weight_set, weight_set_chain
from ...physics import mask_fingerprint
from ..base import Parameter, ParameterError, Problem, ReconMethod, Step
from ..registry import register
from .common import data_objective, load_network, resolve_weights

NOISE_OFFSET = 0.01
PATTERN_PENALTY = 0.1


@dataclass(frozen=True)
class TrainedSetting:
    name: str  #: e.g. ``radial25-sigma0.05``
    stem: str  #: weights stem (path without suffix)
    mask_spec: str
    fingerprint: str
    sampling_fraction: float
    sigma: float

    def distance(self, sampling_fraction: float, fingerprint: str, sigma: float) -> float:
        mask_term = abs(math.log(max(sampling_fraction, 1e-9) / max(self.sampling_fraction, 1e-9)))
        noise_term = abs(math.log((sigma + NOISE_OFFSET) / (self.sigma + NOISE_OFFSET)))
        return mask_term + noise_term + (0.0 if fingerprint == self.fingerprint else PATTERN_PENALTY)


def _setting(config: dict, stem) -> TrainedSetting:
    """The :class:`TrainedSetting` of a variational network's config (``KeyError``/``TypeError``/``ValueError`` for
    a field that is missing or out of range: a noise sigma of -0.01 divided by zero in :meth:`distance`)."""
    from ...physics.noise import MAX_SIGMA

    fraction, sigma = float(config["sampling_fraction"]), float(config["noise_sigma"])
    if not 0 < fraction <= 1:
        raise ValueError(f"sampling_fraction must be in (0, 1], got {fraction!r}")
    if not 0 <= sigma <= MAX_SIGMA:
        raise ValueError(f"noise_sigma must be in [0, {MAX_SIGMA:g}], got {sigma!r}")
    return TrainedSetting(str(config["setting"]), str(stem), str(config["mask_spec"]), str(config["mask_fingerprint"]),
                          fraction, sigma)


def trained_settings(folder=None, weight_set=None) -> list[TrainedSetting]:
    """The variational networks found as ``varnet-*.json`` in ``folder``, else in ``weight_set`` (default: the
    bundled default set) or the first of its fallbacks that has any (unreadable files are skipped)."""
    if folder is None:
        folders = [s.folder for s in weight_set_chain(weight_set)]
        folder = next((f for f in folders if any(f.glob("varnet-*.json"))), folders[0])
    settings = []
    for meta in sorted(folder.glob("varnet-*.json")):
        stem = meta.with_suffix("")
        try:
            settings.append(_setting(read_weights_json(stem)["config"], stem))
        except (WeightsError, KeyError, TypeError, ValueError, OverflowError):
            continue
    return settings


def nearest_setting(problem: Problem, settings: list[TrainedSetting]) -> tuple[TrainedSetting, float]:
    """The trained setting nearest to the problem's mask and noise level, and its distance."""
    if not settings:
        raise WeightsError("no variational network weights (varnet-*.json) in the weight set "
                           f"{problem.weight_set.name!r}; train one with "
                           "'genreg train varnet --mask SPEC --noise SIGMA'")
    fraction = problem.operator.sampling_fraction
    fingerprint = mask_fingerprint(problem.operator.mask)
    scored = [(s.distance(fraction, fingerprint, problem.sigma), s) for s in settings]
    distance, best = min(scored, key=lambda pair: pair[0])
    return best, distance


def _build(config: dict) -> VariationalNetwork:
    return VariationalNetwork(int(config["stages"]), int(config["filters"]), int(config["kernel_size"]),
                              int(config["rbf_count"]), float(config["rbf_extent"]))


@register
class VariationalNetworkMethod(ReconMethod):
    name = "varnet"
    title = "Variational network"
    description = "Unrolled learned gradient steps with RBF activations, trained per setting (Hammernik et al. 2018)"
    category = "learned"
    default_iterations = 10
    parameters = (
        Parameter("setting", str, "auto",
                  "trained network to use: 'auto' = nearest to the data's mask and noise level, or a setting name "
                  "such as radial25-sigma0.05 (see resources/weights/varnet-*.json), or a weights path stem"),
    )

    def available(self) -> tuple[bool, str]:
        weight_set = availability_weight_set()
        if trained_settings(weight_set=weight_set):
            return True, ""
        return False, ("no variational network weights (varnet-*.json) in the weight set "
                       f"{weight_set.name!r}; train one with 'genreg train varnet --mask SPEC --noise SIGMA'")

    def choose(self, problem: Problem, requested: str) -> tuple[str, str, bool, float | None]:
        """``(setting name, weights stem, exact match, distance)`` for the request."""
        settings = trained_settings(weight_set=problem.weight_set)
        fingerprint = mask_fingerprint(problem.operator.mask)
        if requested.strip().lower() == "auto":
            best, distance = nearest_setting(problem, settings)
        else:
            by_name = {s.name: s for s in settings}
            if requested in by_name:
                best = by_name[requested]
            else:
                stem = resolve_weights(requested, problem.weight_set)
                try:
                    best = _setting(read_weights_json(stem)["config"], stem)
                except WeightsError:
                    raise ParameterError(
                        f"unknown variational network setting {requested!r}; available: "
                        f"{', '.join(['auto'] + sorted(by_name))} or a weights path"
                    ) from None
                except (KeyError, TypeError, ValueError, OverflowError) as exc:
                    raise WeightsError(f"{stem}.json is not a variational network ({exc})") from None
            distance = best.distance(problem.operator.sampling_fraction, fingerprint, problem.sigma)
        exact = best.fingerprint == fingerprint and math.isclose(best.sigma, problem.sigma, rel_tol=1e-6, abs_tol=1e-9)
        return best.name, best.stem, exact, distance

    def iterate(self, problem: Problem, params: dict[str, Any], iterations: int) -> Iterator[Step]:
        name, stem, exact, distance = self.choose(problem, params["setting"])
        network, config, _ = load_network(stem, _build, problem.device, problem.weight_set)
        stages = len(network.stages)
        if iterations > stages:
            raise ParameterError(
                f"the variational network {name} has {stages} stages; ask for at most {stages} iterations"
            )
        note = "" if exact else " (nearest trained setting)"
        extras = {"trained_setting": name, "exact_setting": exact,
                  "setting_distance": None if distance is None else round(distance, 4),
                  "message": f"variational network trained for {name}{note}"}
        with torch.no_grad():
            for t, x in enumerate(network.iterates(problem.y, problem.operator)):
                if t == 0:
                    continue
                yield Step(t, x, data_objective(problem, x), dict(extras))
                if t == iterations:
                    break
