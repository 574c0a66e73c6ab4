"""Narnhofer, Hammernik, Knoll, Pock 2019 ("Inverse GANs for accelerated MRI reconstruction").

Phase 1 (iterations 1 .. ``z_iterations``): range search on z, ``min_z 1/2||A G_theta(z) - y||^2 + mu ||z||^2``.
Phase 2 (the remaining iterations): starting from the best z, alternately update z and the decoder weights theta
with Adam on the same objective, so the image can leave the range of the generator to fit the data. Every image
gets its own copy of the mean decoder; the bundled weights are never modified.
"""

from __future__ import annotations

import copy
from typing import Any, Iterator

import torch

from ..base import Parameter, Problem, ReconMethod, Step
from ..registry import register
from . import common
from .range_search import LATENT_LEARNING_RATE, LATENT_PENALTY, LatentSearch, range_objective


@register
class Narnhofer19(ReconMethod):
    name = "narnhofer19"
    title = "Latent + generator tuning (Narnhofer et al. 2019)"
    description = "range search on z, then alternate Adam steps on z and a copy of the decoder weights"
    category = "generative"
    default_iterations = 1200
    tune_parameter = "weight_learning_rate"
    tune_grid = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3)
    parameters = (
        Parameter("z_iterations", int, 1000, "iterations of the first phase (z only)", 0, 100000),
        LATENT_PENALTY,
        LATENT_LEARNING_RATE,
        Parameter("weight_learning_rate", float, 1e-4, "Adam learning rate on the decoder weights", 1e-8, 1.0,
                  log_scale=True),
        Parameter("restarts", int, 1, "starts of the first phase", 1, 64),
    )

    def available(self) -> tuple[bool, str]:
        return common.model_available("identity")

    def iterate(self, problem: Problem, params: dict[str, Any], iterations: int) -> Iterator[Step]:
        model = common.bundled_model("identity", problem.device, problem.weight_set)
        search = LatentSearch(model, problem, params["restarts"], params["mu"], params["learning_rate"])
        phase_one = min(params["z_iterations"], iterations)
        for iteration in range(1, phase_one + 1):
            search.step()
            yield Step(iteration, search.best_image, float(search.best_value.sum()), {"phase": "latent"})
        if phase_one == iterations:
            return
        # Phase 2: one (z, decoder copy) pair per image, started from the best latent of phase 1.
        fits = [_LatentAndWeights(model, problem, i, search.best_latent[i : i + 1], params)
                for i in range(problem.batch_size)]
        for iteration in range(phase_one + 1, iterations + 1):
            values = [fit.step() for fit in fits]
            image = torch.cat([fit.image for fit in fits], dim=0)
            yield Step(iteration, image, float(sum(values)), {"phase": "weights"})


class _LatentAndWeights:
    """Alternating Adam updates of one image's latent and its private decoder copy."""

    def __init__(self, model, problem: Problem, index: int, latent: torch.Tensor, params: dict[str, Any]):
        self.problem, self.mu = problem, params["mu"]
        self.y = problem.y[index : index + 1]
        self.decoder = copy.deepcopy(model.mean_decoder).eval()
        for parameter in self.decoder.parameters():
            parameter.requires_grad_(True)
        self.z = latent.detach().clone().requires_grad_(True)
        self.z_optimizer = torch.optim.Adam([self.z], lr=params["learning_rate"])
        self.weight_optimizer = torch.optim.Adam(self.decoder.parameters(), lr=params["weight_learning_rate"])
        self.update_weights = False
        with torch.no_grad():
            self.image = self.decoder(self.z)

    def step(self) -> float:
        optimizer = self.weight_optimizer if self.update_weights else self.z_optimizer
        optimizer.zero_grad(set_to_none=True)
        with torch.enable_grad():
            value, image = range_objective(self.problem, self.decoder, self.z, self.y, self.mu)
            value.sum().backward()
        optimizer.step()
        self.image = image.detach()
        self.update_weights = not self.update_weights
        return float(value.detach().sum())
