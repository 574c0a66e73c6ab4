"""Posterior samples of ``p(x | y, z*)`` by perturb-and-MAP.

For fixed z* the conditional posterior over real x is Gaussian with precision
``P = Re(A^H A)/sigma^2 + lambda L L^T`` and mean ``P^{-1}(Re(A^H y)/sigma^2 + lambda L L^T G)``. Writing
``P = B^T B + C^T C`` with ``B = A/sigma`` (a real map onto the real and imaginary parts of the sampled k-space) and
``C = sqrt(lambda) L^T``, a sample is the exact solution of

    P x_s = Re(A^H (y + sigma e1))/sigma^2 + lambda L L^T G + sqrt(lambda) L e2,   e1 complex N(0, I), e2 ~ N(0, I)

(Papandreou & Yuille 2010): the right-hand side has mean ``P x_mean`` and covariance ``P``, so
``x_s ~ N(x_mean, P^-1)``.
All samples are solved together as one batch of conjugate-gradient systems, each to a relative residual of
``SAMPLE_CG_TOLERANCE`` (at most ``SAMPLE_CG_MAX_ITERATIONS`` iterations): a truncated solve leaves a sample partly
at its warm start (the MAP), which shrinks the spread. With the x-update's 20 iterations the std map of a bundled
phantom model was 4 % too small on average and up to 37 % at a pixel; at 1e-4 (about 55 iterations) 0.1 % and 6 %.
"""

from __future__ import annotations

import torch

from ..base import Problem
from .common import cholesky_precision_diagonal, solve_quadratic_x

#: relative CG residual ``||r|| / ||b||`` each perturb-and-MAP sample is solved to, and the iteration cap
SAMPLE_CG_TOLERANCE = 1e-4
SAMPLE_CG_MAX_ITERATIONS = 200


class PerturbAndMAP:
    """Perturb-and-MAP samples of ``p(x | y, z)`` with fixed perturbations: ``count`` draws of ``(e1, e2)`` per image
    from ``problem.generator(seed_offset)``, kept while z (hence ``L`` and ``G``) changes, so that the samples move
    smoothly with z and each solve can start from the previous one (common random numbers)."""

    def __init__(self, problem: Problem, count: int, seed_offset: int = 7919) -> None:
        generator = problem.generator(seed_offset)
        shape = (count, *problem.y.shape)
        self.count = count
        e1 = torch.complex(torch.randn(shape, generator=generator), torch.randn(shape, generator=generator))
        self.e1 = e1.to(problem.y.device)
        self.e2 = torch.randn(shape, generator=generator).to(problem.y.device)
        self.samples: torch.Tensor | None = None  # the last solution, ``(count, B, 1, H, W)``

    def restrict(self, keep: torch.Tensor) -> None:
        """Keep the images (batch rows) where ``keep`` is true."""
        self.e1, self.e2 = self.e1[:, keep], self.e2[:, keep]
        if self.samples is not None:
            self.samples = self.samples[:, keep]

    def solve(self, problem: Problem, cholesky, mean: torch.Tensor, x_map: torch.Tensor, sigma: float, lam: float,
              iterations: int, tolerance: float = SAMPLE_CG_TOLERANCE) -> torch.Tensor:
        """The samples for ``L``, ``G`` (``(count, B, 1, H, W)``), each CG solve started from the previous solution
        (from ``x_map`` the first time) and stopped at ``tolerance`` or after ``iterations``."""
        count, batch = self.count, x_map.shape[0]

        def tile(t: torch.Tensor) -> torch.Tensor:
            return t.unsqueeze(0).expand(count, *t.shape).reshape(count * batch, *t.shape[1:])

        tiled = _repeat(cholesky, count)
        y = tile(problem.y)
        perturbed = problem.operator.adjoint_real(y + sigma * self.e1.flatten(0, 1) * problem.operator.sampling)
        prior_rhs = tiled.precision_mul(tile(mean)) + (lam**-0.5) * tiled.mul(self.e2.flatten(0, 1))
        start = tile(x_map) if self.samples is None else self.samples.flatten(0, 1)
        samples, _ = solve_quadratic_x(
            problem, tiled.precision_mul, prior_rhs, start, sigma, lam, iterations, tolerance=tolerance,
            data=perturbed, precision_diagonal=cholesky_precision_diagonal(tiled),
        )
        self.samples = samples.view(count, batch, *x_map.shape[1:])
        return self.samples


def posterior_samples(
    problem: Problem, cholesky, mean: torch.Tensor, x_map: torch.Tensor, sigma: float, lam: float,
    count: int, cg_iterations: int, seed_offset: int = 7919,
) -> torch.Tensor:
    """``count`` samples per image, shape ``(count, B, 1, H, W)``; the CG solves stop at ``SAMPLE_CG_TOLERANCE`` or
    after ``max(cg_iterations, SAMPLE_CG_MAX_ITERATIONS)`` iterations."""
    sampler = PerturbAndMAP(problem, count, seed_offset)
    return sampler.solve(problem, cholesky, mean, x_map, sigma, lam, max(cg_iterations, SAMPLE_CG_MAX_ITERATIONS))


def latent_deviations(problem: Problem, model, x_map: torch.Tensor, count: int,
                      seed_offset: int = 7933) -> torch.Tensor:
    """``count`` deviations ``G(z_k) - mean_k G(z_k)`` per image, shape ``(count, B, 1, H, W)``, with ``z_k`` drawn
    from the encoder's posterior ``q(z | x_map) = N(mu, diag(exp(logvar)))`` at the reconstruction (clipped to
    [0, 1], the encoder's input range): the spread of the decoded mean over the latents the VAE finds plausible for
    that image. The perturb-and-MAP samples fix ``z = z*`` and so miss this part of the uncertainty (Duff et al. 2023
    sample x given z only); adding ``b (G(z_k) - mean G)`` to sample ``k`` gives samples whose variance is
    ``s^2 + b^2 Var_q G(z)`` per pixel. Normal draws come from ``problem.generator(seed_offset)`` on the CPU."""
    generator = problem.generator(seed_offset)
    mu, logvar = model.encode(x_map.clamp(0, 1))
    noise = torch.randn((count, *mu.shape), generator=generator, dtype=mu.dtype).to(mu.device)
    z = (mu + torch.exp(0.5 * logvar) * noise).flatten(0, 1)  # (count * B, ...): one batched decode
    decoded = model.decode_mean(z).view(count, *x_map.shape)
    return decoded - decoded.mean(dim=0, keepdim=True)


def posterior_std(problem: Problem, cholesky, mean, x_map, sigma, lam, count: int, cg_iterations: int) -> torch.Tensor:
    """Per-pixel posterior standard deviation ``(B, 1, H, W)`` estimated from ``count`` perturb-and-MAP samples."""
    samples = posterior_samples(problem, cholesky, mean, x_map, sigma, lam, max(count, 2), cg_iterations)
    return samples.std(dim=0)


def _repeat(cholesky, count: int):
    """The batch of factors repeated ``count`` times along the batch, sample-major (matches ``tile``)."""
    return type(cholesky)(
        cholesky.log_diag.repeat(count, 1, 1, 1), cholesky.off_diag.repeat(count, 1, 1, 1), cholesky.neighbourhood
    )
