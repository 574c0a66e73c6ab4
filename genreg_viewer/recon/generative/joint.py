"""Joint (x, z) reconstruction with a VAE regulariser: ``mean+identity``, ``mean+diagonal``, ``mean+covar``.

Paper eq. 12 (Duff, Simpson, Ehrhardt, Campbell 2023):

    min_{x, z}  E(x, z) = 1/(2 sigma^2) ||A x - y||^2 + lambda ( nll(x; G(z), L(z)) + mu/2 ||z||^2 ),
    nll(x; G, L) = 1/2 ||L^T (x - G)||^2 - sum_i log L_ii          (Gaussian with precision L L^T, eq. 10)

with G the mean decoder and L(z) the sparse Cholesky factor of the precision from the covariance decoder
(``identity``: L = rho^{-1/2} I; ``diagonal``: learned diagonal; ``covar``: 3x3-structured). With lambda = mu = 1
this is exactly the MAP estimate of p(x, z | y) under the VAE's generative model.

Algorithm (block coordinate descent; the objective never increases):
  * x-update: for fixed z the problem is quadratic in x and is solved exactly by conjugate gradients on
    ``(Re(A^H A)/sigma^2 + lambda L L^T) x = Re(A^H y)/sigma^2 + lambda L L^T G`` (warm start).
  * z-update: ``z_steps`` gradient steps on ``nll(x; G(z), L(z)) + mu/2 ||z||^2`` with per-image backtracking
    (Armijo) line search, so only decreasing steps are accepted; the step grows after each success.
Initialisation: x at the zero-filled adjoint, z at the encoder mean of the adjoint.

Uncertainty: for the final z*, ``p(x | y, z*)`` is Gaussian with precision ``Re(A^H A)/sigma^2 + lambda L L^T``;
``posterior_samples`` draws from it by perturb-and-MAP (:mod:`.posterior`) and the per-pixel standard deviation is
returned as ``extras['std_map']``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Iterator

import torch

from ..base import Parameter, Problem, ReconMethod, Step
from ..registry import register
from . import common
from .common import effective_sigma, solve_quadratic_x
from .posterior import posterior_std
from .tuned import tuned_defaults


def _latent_energy(model, x: torch.Tensor, z: torch.Tensor, mu: float) -> torch.Tensor:
    """``nll(x; G(z), L(z)) + mu/2 ||z||^2`` per image (the z-dependent part of E divided by lambda)."""
    cholesky = model.decode_cholesky(z)
    return cholesky.nll(x, model.decode_mean(z)) + 0.5 * mu * z.square().sum(1)


class JointGenerativeReconstruction(ReconMethod):
    """Base of the three ``mean+...`` methods; subclasses fix :attr:`covariance_kind`."""

    covariance_kind: ClassVar[str]
    category = "generative"
    default_iterations = 40
    tune_parameter = "lam"
    tune_grid = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
    parameters = (
        Parameter("lam", float, 1.0, "lambda: weight of the generative regulariser (eq. 12)", 1e-4, 1e4, log_scale=True),
        Parameter("mu", float, 1.0, "mu: weight of the latent prior mu/2 ||z||^2", 0.0, 1e4, log_scale=True),
        Parameter("z_steps", int, 3, "backtracking gradient steps on z per outer iteration", 1, 100),
        Parameter("z_step_size", float, 1e-3, "initial z step size (adapted by backtracking)", 1e-8, 10.0, log_scale=True),
        Parameter("cg_iterations", int, 40, "maximum conjugate-gradient iterations per exact x-update", 1, 1000),
        Parameter("tolerance", float, 1e-6, "stop when the relative decrease of the objective is below this", 0.0, 1.0,
                  log_scale=True),
        Parameter("posterior_samples", int, 16, "perturb-and-MAP samples for the posterior std map (0: none)", 0, 512),
    )

    def available(self) -> tuple[bool, str]:
        return common.model_available(self.covariance_kind)

    def defaults_for(self, problem: Problem) -> dict[str, Any]:
        return tuned_defaults(self.name, problem)

    def objective(self, model, problem: Problem, x, z, params, sigma) -> torch.Tensor:
        """``E(x, z)`` per image."""
        data = problem.operator.data_misfit(x, problem.y) / (2 * sigma**2)
        return data + params["lam"] * _latent_energy(model, x, z, params["mu"])

    def iterate(self, problem: Problem, params: dict[str, Any], iterations: int) -> Iterator[Step]:
        model = common.bundled_model(self.covariance_kind, problem.device)
        sigma = effective_sigma(problem)
        lam, mu = params["lam"], params["mu"]
        x = problem.zero_filled()
        with torch.no_grad():
            z = model.encode(x)[0]
        step = torch.full((x.shape[0],), params["z_step_size"], device=x.device)
        with torch.no_grad():
            energy = self.objective(model, problem, x, z, params, sigma)
        for iteration in range(1, iterations + 1):
            previous = energy
            # x-update: exact minimiser of the quadratic for fixed z
            with torch.no_grad():
                cholesky = model.decode_cholesky(z)
                mean = model.decode_mean(z)
                x, _ = solve_quadratic_x(
                    problem, cholesky.precision_mul, cholesky.precision_mul(mean), x, sigma, lam,
                    params["cg_iterations"],
                )
            # z-update: backtracking gradient descent on the latent energy
            z, step = self._z_steps(model, x, z, mu, step, params["z_steps"])
            with torch.no_grad():
                energy = self.objective(model, problem, x, z, params, sigma)
            extras = {"latent": z.detach()}
            converged = bool(((previous - energy) <= params["tolerance"] * previous.abs()).all())
            if converged or iteration == iterations:
                if params["posterior_samples"] > 0:
                    with torch.no_grad():
                        extras["std_map"] = posterior_std(
                            problem, model.decode_cholesky(z), model.decode_mean(z), x, sigma, lam,
                            params["posterior_samples"], params["cg_iterations"],
                        )
                yield Step(iteration, x, float(energy.sum()), extras)
                return
            yield Step(iteration, x, float(energy.sum()), extras)

    @staticmethod
    def _z_steps(model, x, z, mu, step, count, shrink: float = 0.5, grow: float = 2.0, max_backtracks: int = 12):
        """``count`` gradient steps on ``z`` with per-image Armijo backtracking; returns (z, adapted steps)."""
        z = z.detach()
        for _ in range(count):
            z_var = z.clone().requires_grad_(True)
            with torch.enable_grad():
                energy = _latent_energy(model, x, z_var, mu)
                (grad,) = torch.autograd.grad(energy.sum(), z_var)
            energy = energy.detach()
            grad_sq = grad.square().sum(1)
            accepted = torch.zeros_like(step, dtype=torch.bool)
            trial_step = step.clone()
            new_z = z
            with torch.no_grad():
                for _ in range(max_backtracks):
                    candidate = z - trial_step[:, None] * grad
                    cand_energy = _latent_energy(model, x, candidate, mu)
                    ok = (cand_energy <= energy - 0.5 * trial_step * grad_sq) & ~accepted
                    new_z = torch.where(ok[:, None], candidate, new_z)
                    accepted |= ok
                    if bool(accepted.all()):
                        break
                    trial_step = torch.where(accepted, trial_step, trial_step * shrink)
            z = new_z
            step = torch.where(accepted, trial_step * grow, trial_step)
        return z.detach(), step


@register
class MeanIdentity(JointGenerativeReconstruction):
    name = "mean+identity"
    title = "VAE mean + identity covariance"
    description = "eq. 12 with Sigma = rho I (Duff et al. 2023 ablation)"
    covariance_kind = "identity"


@register
class MeanDiagonal(JointGenerativeReconstruction):
    name = "mean+diagonal"
    title = "VAE mean + learned diagonal covariance"
    description = "eq. 12 with a learned diagonal Sigma(z) (Duff et al. 2023 ablation)"
    covariance_kind = "diagonal"


@register
class MeanCovar(JointGenerativeReconstruction):
    name = "mean+covar"
    title = "VAE mean + structured covariance"
    description = "eq. 12 with a sparse-Cholesky structured precision L(z)L(z)^T (Duff et al. 2023)"
    covariance_kind = "covar"
