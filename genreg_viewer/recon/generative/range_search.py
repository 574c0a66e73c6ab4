"""Range search (Bora, Jalal, Price, Dimakis 2017, "Compressed sensing using generative models").

    min_z  1/2 ||A G(z) - y||^2 + mu ||z||^2,      x = G(z*)

optimised with Adam on z from several starts (restart 0 at the encoder mean of the adjoint, the others drawn
from N(0, I) with the problem seed); all starts run together as one batch and, per image, the start with the lowest
objective so far is reported. The result lies in the range of the generator, so its quality saturates as the
number of measurements grows.
"""

from __future__ import annotations

from typing import Any, Iterator

import torch

from ..base import Parameter, Problem, ReconMethod, Step
from ..registry import register
from . import common


def range_objective(problem: Problem, decoder, z: torch.Tensor, y: torch.Tensor, mu: float):
    """``1/2 ||A G(z) - y||^2 + mu ||z||^2`` per latent (``y`` tiled to the batch of ``z``), and ``G(z)``."""
    image = decoder(z)
    return 0.5 * problem.operator.data_misfit(image, y) + mu * z.square().sum(1), image


def initial_latents(model, problem: Problem, restarts: int) -> torch.Tensor:
    """``(restarts * B, latent)``: encoder mean of the adjoint, then seeded standard-normal draws (restart-major)."""
    with torch.no_grad():
        encoded = model.encode(problem.zero_filled())[0]
    draws = torch.randn((restarts - 1, *encoded.shape), generator=problem.generator(101)).to(encoded)
    return torch.cat([encoded.unsqueeze(0), draws], dim=0).flatten(0, 1)


class LatentSearch:
    """Adam on a batch of latents with best-so-far tracking per image (shared by range and narnhofer19)."""

    def __init__(self, model, problem: Problem, restarts: int, mu: float, learning_rate: float):
        self.model, self.problem, self.restarts, self.mu = model, problem, restarts, mu
        self.batch = problem.batch_size
        self.y = problem.y.repeat(restarts, 1, 1, 1)
        self.z = initial_latents(model, problem, restarts).requires_grad_(True)
        self.optimizer = torch.optim.Adam([self.z], lr=learning_rate)
        self.best_value = torch.full((self.batch,), float("inf"), device=problem.device)
        self.best_image = problem.zero_filled()
        self.best_latent = self.z.detach()[: self.batch].clone()

    def step(self, decoder=None, optimizers=()) -> None:
        """One Adam step on z (and on any extra ``optimizers``, e.g. decoder weights) for ``decoder`` (default G)."""
        self.optimizer.zero_grad(set_to_none=True)
        for extra in optimizers:
            extra.zero_grad(set_to_none=True)
        with torch.enable_grad():
            value, image = range_objective(self.problem, decoder or self.model.decode_mean, self.z, self.y, self.mu)
            value.sum().backward()
        self.record(value.detach(), image.detach())
        self.optimizer.step()
        for extra in optimizers:
            extra.step()

    def record(self, value: torch.Tensor, image: torch.Tensor) -> None:
        """Keep, per image, the start with the lowest objective so far (``value``, ``image`` at the current z)."""
        with torch.no_grad():
            best_now, which = value.view(self.restarts, self.batch).min(0)
            improved = best_now < self.best_value
            if bool(improved.any()):
                index = torch.arange(self.batch, device=which.device)
                chosen_image = image.view(self.restarts, self.batch, *image.shape[1:])[which, index]
                chosen_latent = self.z.detach().view(self.restarts, self.batch, -1)[which, index]
                self.best_image = torch.where(improved.view(-1, 1, 1, 1), chosen_image, self.best_image)
                self.best_latent = torch.where(improved.view(-1, 1), chosen_latent, self.best_latent)
                self.best_value = torch.where(improved, best_now, self.best_value)


#: shared with :mod:`.narnhofer`, whose first phase is this range search
LATENT_PENALTY = Parameter("mu", float, 0.01, "weight of the latent penalty mu ||z||^2", 0.0, 1e4, log_scale=True)
LATENT_LEARNING_RATE = Parameter("learning_rate", float, 0.03, "Adam learning rate on z", 1e-6, 10.0, log_scale=True)


@register
class RangeSearch(ReconMethod):
    name = "range"
    title = "Range search (Bora et al. 2017)"
    description = "min_z 1/2||A G(z) - y||^2 + mu ||z||^2 with Adam and restarts; x = G(z)"
    category = "generative"
    default_iterations = 300
    tune_parameter = "mu"
    tune_grid = (0.0, 0.001, 0.01, 0.1, 1.0)
    parameters = (
        LATENT_PENALTY,
        LATENT_LEARNING_RATE,
        Parameter("restarts", int, 3, "number of starts (the first at the encoder mean of the adjoint)", 1, 64),
    )

    def available(self) -> tuple[bool, str]:
        return common.model_available("identity")

    def iterate(self, problem: Problem, params: dict[str, Any], iterations: int) -> Iterator[Step]:
        model = common.bundled_model("identity", problem.device, problem.weight_set)
        search = LatentSearch(model, problem, params["restarts"], params["mu"], params["learning_rate"])
        for iteration in range(1, iterations + 1):
            search.step()
            yield Step(iteration, search.best_image, float(search.best_value.sum()), {"latent": search.best_latent})
