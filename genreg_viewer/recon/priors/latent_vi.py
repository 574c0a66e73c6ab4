"""Bayesian reconstruction with a generative model by variational inference over its latent (Marinescu, Moyer,
Golland 2020/2021, "Bayesian image reconstruction using deep generative models", BRGM; the variational variant).

Instead of one MAP latent, fit a Gaussian posterior ``q(z) = N(m, diag(s^2))`` over the latent of a generator ``G``
(the mean decoder of the bundled VAE, or the bundled normalising flow) by maximising the evidence lower bound::

    ELBO(m, s) = E_{eps ~ N(0, I)} [ beta log p(y | G(m + s * eps)) ] - KL( N(m, diag s^2) || N(0, I) ),
    log p(y | x) = -||A x - y||^2 / (2 sigma^2) - M log(2 pi sigma^2)      (M sampled k-space coefficients),
    KL = 1/2 sum_j (m_j^2 + s_j^2 - 2 log s_j - 1),

with ``sigma`` the problem's noise level (floored at ``common.MIN_SIGMA``) and ``beta`` (``data_weight``, 1 for the
exact posterior) an optional tempering of the likelihood. The expectation is estimated with ``mc_samples``
reparameterised draws per step; Adam on ``(m, log s)`` with a cosine decay of the learning rate to 1/20 of its start
(decreasing steps make the stochastic gradient iteration settle, Robbins & Monro 1951). Start: the VAE encoder's
``q(z | Re(A^H y))`` (mean and std), or for the flow ``m = f(Re(A^H y))`` and ``s = flow_initial_std``.

Reported: while iterating the image ``G(m)`` and the negative ELBO (without the constant ``M log(2 pi sigma^2)``);
at the end the posterior-mean reconstruction ``E_q[G(z)]`` estimated from ``samples`` draws, and in the extras
``samples`` (``(K, B, 1, H, W)`` plausible reconstructions ``G(z_k)``, ``z_k ~ q``), ``std_map`` (their per-pixel
standard deviation, ``(B, 1, H, W)``), ``latent`` (``m``) and ``latent_std`` (``s``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch

from ..base import Parameter, Problem, ReconMethod, Step
from ..generative import common
from ..registry import register
from . import flow_prior

#: final learning rate as a fraction of the initial one (cosine decay)
FINAL_LR_FRACTION = 0.05
#: images decoded at once when drawing the final posterior samples
DECODE_CHUNK = 16


@dataclass
class LatentGenerator:
    """A generator ``G`` with its latent size and the starting posterior ``(m0, s0)`` for a problem."""

    decode: Callable[[torch.Tensor], torch.Tensor]
    dimension: int
    initial_mean: torch.Tensor
    initial_std: torch.Tensor


@torch.no_grad()
def vae_generator(problem: Problem, kind: str) -> LatentGenerator:
    """The bundled VAE's mean decoder; start at the encoder's ``q(z | Re(A^H y))``."""
    model = common.bundled_model(kind, problem.device, problem.weight_set)
    mean, logvar = model.encode(problem.zero_filled())
    return LatentGenerator(model.decode_mean, mean.shape[1], mean, torch.exp(0.5 * logvar))


@torch.no_grad()
def flow_generator(problem: Problem, initial_std: float, method: str) -> LatentGenerator:
    """The bundled flow ``G = f^{-1}``; start at ``m = f(clip(Re(A^H y), 0, 1))`` with ``s = initial_std``
    (:func:`flow_prior.initial_latent`)."""
    flow = flow_prior.bundled_flow(problem.device, problem.weight_set)
    flow_prior.check_image_size(flow, problem, method)
    mean = flow_prior.initial_latent(flow, problem, "adjoint")
    return LatentGenerator(flow.decode, flow.dimension, mean, torch.full_like(mean, initial_std))


def gaussian_kl(mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """``KL(N(m, diag s^2) || N(0, I)) = 1/2 sum(m^2 + s^2 - 2 log s - 1)`` per row, ``(B,)``."""
    return 0.5 * (mean.square() + torch.exp(2 * log_std) - 2 * log_std - 1.0).sum(1)


def negative_elbo(problem: Problem, decode, mean: torch.Tensor, log_std: torch.Tensor, eps: torch.Tensor,
                  sigma: float, data_weight: float) -> torch.Tensor:
    """Monte Carlo estimate of ``-ELBO`` per image ``(B,)`` (without ``M log(2 pi sigma^2)``) from the standard
    normal draws ``eps`` ``(K, B, d)``: ``beta mean_k ||A G(m + s eps_k) - y||^2 / (2 sigma^2) + KL``."""
    count, batch = eps.shape[:2]
    z = (mean + torch.exp(log_std) * eps).flatten(0, 1)
    images = decode(z)
    y = problem.y.unsqueeze(0).expand(count, *problem.y.shape).flatten(0, 1)
    misfit = problem.operator.data_misfit(images, y).view(count, batch)
    return data_weight * misfit.mean(0) / (2 * sigma**2) + gaussian_kl(mean, log_std)


def cosine_learning_rate(start: float, iteration: int, iterations: int) -> float:
    """``start`` decayed along half a cosine to ``FINAL_LR_FRACTION * start`` at the last iteration."""
    progress = (iteration - 1) / max(iterations - 1, 1)
    return start * (FINAL_LR_FRACTION + (1 - FINAL_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * progress)))


@torch.no_grad()
def posterior_samples(decode, mean: torch.Tensor, log_std: torch.Tensor, count: int,
                      generator: torch.Generator) -> torch.Tensor:
    """``G(m + s eps_k)`` for ``count`` draws (on the CPU from ``generator``), ``(count, B, 1, H, W)``."""
    eps = torch.randn((count, *mean.shape), generator=generator, dtype=mean.dtype).to(mean.device)
    z = (mean + torch.exp(log_std) * eps).flatten(0, 1)
    images = torch.cat([decode(chunk) for chunk in z.split(DECODE_CHUNK)])
    return images.view(count, mean.shape[0], *images.shape[1:])


@register
class LatentVI(ReconMethod):
    name = "latent-vi"
    title = "Variational latent posterior (Marinescu et al., BRGM)"
    description = ("fit q(z) = N(m, diag s^2) over a generator's latent by maximising the ELBO; posterior mean, "
                   "samples and a std map")
    category = "generative"
    default_iterations = 200
    tune_parameter = "data_weight"
    tune_grid = (0.1, 0.25, 0.5, 1.0)
    parameters = (
        Parameter("generator", str, "vae", "latent of the bundled VAE mean decoder, or of the bundled flow",
                  choices=("vae", "flow")),
        Parameter("kind", str, "identity", "which bundled VAE supplies the mean decoder G",
                  choices=("identity", "covar")),
        Parameter("learning_rate", float, 0.05, "initial Adam learning rate on (m, log s) (cosine decay to 1/20)",
                  1e-5, 10.0, log_scale=True),
        Parameter("mc_samples", int, 4, "reparameterised samples per ELBO gradient", 1, 256),
        Parameter("samples", int, 16, "posterior samples returned (flip-book, std map, posterior mean)", 2, 512),
        Parameter("data_weight", float, 1.0, "beta: likelihood tempering (1: exact posterior, <1: wider)", 1e-4, 10.0,
                  log_scale=True),
        Parameter("flow_initial_std", float, 0.05, "initial posterior std s with the flow generator", 1e-4, 10.0,
                  log_scale=True),
    )

    def available(self) -> tuple[bool, str]:
        return common.model_available("identity")

    def _generator(self, problem: Problem, params: dict[str, Any]) -> LatentGenerator:
        if params["generator"] == "flow":
            ok, why = flow_prior.flow_available()
            if not ok:
                raise RuntimeError(f"{self.name} with generator=flow: {why}")
            return flow_generator(problem, params["flow_initial_std"], self.name)
        ok, why = common.model_available(params["kind"])
        if not ok:
            raise RuntimeError(f"{self.name}: {why}")
        return vae_generator(problem, params["kind"])

    def iterate(self, problem: Problem, params: dict[str, Any], iterations: int) -> Iterator[Step]:
        latent = self._generator(problem, params)
        sigma = common.effective_sigma(problem)
        mean = latent.initial_mean.clone().requires_grad_(True)
        log_std = torch.log(latent.initial_std.clamp_min(1e-6)).requires_grad_(True)
        optimizer = torch.optim.Adam([mean, log_std], lr=params["learning_rate"])
        draws = problem.generator(4099)
        shape = (params["mc_samples"], *mean.shape)
        for iteration in range(1, iterations + 1):
            for group in optimizer.param_groups:
                group["lr"] = cosine_learning_rate(params["learning_rate"], iteration, iterations)
            eps = torch.randn(shape, generator=draws, dtype=mean.dtype).to(mean.device)
            optimizer.zero_grad(set_to_none=True)
            with torch.enable_grad():
                loss = negative_elbo(problem, latent.decode, mean, log_std, eps, sigma, params["data_weight"])
                loss.sum().backward()
            objective = float(loss.detach().sum())
            if iteration < iterations:  # report G(m) with the objective of the same (m, s), then update
                with torch.no_grad():
                    image = latent.decode(mean)
                    current = mean.detach().clone()
                optimizer.step()
                yield Step(iteration, image, objective, {"latent": current})
            else:
                optimizer.step()
        samples = posterior_samples(latent.decode, mean.detach(), log_std.detach(), params["samples"],
                                    problem.generator(8191))
        extras = {
            "samples": samples,
            "std_map": samples.std(dim=0),
            "latent": mean.detach().clone(),
            "latent_std": torch.exp(log_std.detach()),
        }
        yield Step(iterations, samples.mean(dim=0), objective, extras)
