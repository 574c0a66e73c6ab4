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
  * z-update: ``z_steps`` line-searched steps on ``nll(x; G(z), L(z)) + mu/2 ||z||^2`` (:mod:`.latent_steps`):
    L-BFGS directions by default (``z_optimiser=lbfgs``, converges in far fewer decoder evaluations) or the paper's
    plain gradient steps (``gradient``); a per-image Armijo backtracking line search accepts only decreasing steps.
    The decoder outputs at the accepted z are kept with their graph and reused by the next x-update, the objective
    and the next z-gradient, so each z-step costs about one decoder forward pass and one backward pass.
Initialisation (``warm_start``): ``none`` starts x at the zero-filled adjoint and z at the encoder mean of the adjoint;
``identity`` starts from the mean+identity solution of the same problem (its own tuned lambda, mu). Stage 2 of the
training keeps the stage-1 encoder and mean decoder, so the three models share one latent space and the simpler
model's (x, z) is a valid start: a continuation that keeps the structured model out of the over-confident covariances
it otherwise drifts to when the data are weak (few spokes). The warm-start iterations are set-up steps (``Step``
iteration 0): cancellable, not counted in ``iterations``.

Weak data (``precision_penalty``): the joint MAP rewards confident covariances (``-sum log L_pp``) even where the
data do not constrain x, since x can follow the mean there; ``marginal`` adds a diagonal approximation of the marginal
likelihood's log det, ``expected`` replaces the z-step's ``nll(x; z)`` by its expectation under the current
conditional posterior ``p(x | y, z_k) = N(x_k, H_k^-1)`` (one EM step for the marginal MAP of z):
``E nll = nll(x_k; z) + 1/2 tr(L(z)^T H_k^-1 L(z))``, the trace estimated by ``1/2 mean_s ||L(z)^T (x_s - x_k)||^2``
over perturb-and-MAP samples ``x_s`` whose perturbations stay fixed through the iterations (each solve starts from
the previous one, ``cg_iterations`` steps); the energy then changes with the samples, so ``tolerance`` is not used
and every iteration runs.

Uncertainty: for the final z*, ``p(x | y, z*)`` is Gaussian with precision ``Re(A^H A)/sigma^2 + lambda L L^T``;
``posterior_samples`` draws from it by perturb-and-MAP (:mod:`.posterior`) and the per-pixel standard deviation is
returned as ``extras['std_map']``; the first :data:`KEPT_SAMPLES` of those draws (no second sampling pass) as
``extras['samples']``, ``(K, B, 1, H, W)`` like latent-vi's, for the app's flip-book.
"""

from __future__ import annotations

import collections
from typing import Any, ClassVar, Iterator

import torch

from ...tuning import GENERATIVE_TABLE, tuned_defaults
from ..base import Parameter, Problem, ReconMethod, Step
from ..registry import register
from . import common
from .common import cholesky_precision_diagonal, effective_sigma, solve_quadratic_x
from .latent_steps import Z_OPTIMISERS, DecodedLatent
from .posterior import PerturbAndMAP, latent_deviations, posterior_samples

#: how many of the posterior samples drawn for the std map are returned (``extras['samples']``)
KEPT_SAMPLES = 8


class JointGenerativeReconstruction(ReconMethod):
    """Base of the three ``mean+...`` methods; subclasses fix :attr:`covariance_kind`."""

    covariance_kind: ClassVar[str]
    category = "generative"
    default_iterations = 40
    #: convergence is judged on the objective decrease over this many outer iterations (single steps are noisy)
    convergence_window = 5
    tune_parameter = "lam"
    tune_grid = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
    parameters: ClassVar[tuple[Parameter, ...]] = (
        Parameter("lam", float, 1.0, "lambda: weight of the generative regulariser (eq. 12)", 1e-4, 1e4,
                  log_scale=True),
        Parameter("mu", float, 1.0, "mu: weight of the latent prior mu/2 ||z||^2", 0.0, 1e4, log_scale=True),
        Parameter("z_steps", int, 1, "line-searched z-steps per outer iteration", 1, 100),
        Parameter("z_optimiser", str, "gradient", "z-step direction: the paper's plain gradient or L-BFGS (faster "
                  "descent, but its long steps make the result sensitive to tiny changes of the data)",
                  choices=tuple(Z_OPTIMISERS)),
        Parameter("z_step_size", float, 1e-3, "initial z step size (adapted by the line search)", 1e-8, 10.0,
                  log_scale=True),
        Parameter("cg_iterations", int, 20, "maximum Jacobi-preconditioned conjugate-gradient iterations per "
                  "x-update (warm-started)", 1, 1000),
        Parameter("tolerance", float, 2e-5, "converged when the objective's mean relative decrease per iteration over "
                  "the last 5 iterations is below this (0: run all iterations)", 0.0, 1.0, log_scale=True),
        Parameter("precision_penalty", str, "none", "none: eq. 12; marginal: + lambda/2 sum_p log(f/(lambda sigma^2) "
                  "+ diag(L L^T)_p), a diagonal approximation of the marginal likelihood's log det; expected: the "
                  "z-step minimises the nll expected under the posterior of x (EM), estimated with perturb-and-MAP "
                  "samples (both penalise confident covariances where the data are weak)",
                  choices=("none", "marginal", "expected")),
        Parameter("penalty_samples", int, 4, "posterior samples of x that estimate the expected nll "
                  "(precision_penalty=expected)", 1, 64),
        Parameter("warm_start", str, "none", "where the descent starts: none = the adjoint and its encoding; identity "
                  "= the mean+identity solution (same latent space; helps when the data are weak)",
                  choices=("none", "identity")),
        Parameter("posterior_samples", int, 16, "perturb-and-MAP samples for the posterior std map (0: none)", 0, 512),
        Parameter("latent_std", float, 0.0, "weight b of the latent uncertainty in the posterior samples: sample k "
                  "+ b (G(z_k) - mean G), z_k ~ q(z | x_hat) from the encoder, so std^2 = s^2 + b^2 Var G (0: x "
                  "given z* only, as in the paper)", 0.0, 100.0),
    )

    def available(self) -> tuple[bool, str]:
        return common.model_available(self.covariance_kind)

    def defaults_for(self, problem: Problem) -> dict[str, Any]:
        return tuned_defaults(GENERATIVE_TABLE, self.name, problem)

    @staticmethod
    def objective(problem: Problem, x: torch.Tensor, decoded: DecodedLatent, lam: float, mu: float,
                  sigma: float, penalty=None) -> torch.Tensor:
        """``E(x, z)`` per image (eq. 12, plus the optional precision penalty), from the decoder outputs at z."""
        with torch.no_grad():
            data = problem.operator.data_misfit(x, problem.y) / (2 * sigma**2)
        return data + lam * decoded.energy(x, mu, penalty)

    @staticmethod
    def marginal_penalty(problem: Problem, sigma: float, lam: float):
        """``L -> 1/2 sum_p log(f / (lam sigma^2) + diag(L L^T)_p)`` (``f`` = sampling fraction), added to the latent
        energy ``E / lam`` (so ``lam/2 sum_p log(...)`` in ``E``).

        The marginal likelihood of the tempered model (likelihood to the power ``1/lam``) is ``-log p(y | z) =
        min_x E(x, z) / lam + 1/2 log det(H / lam) + const`` with the posterior precision ``H = Re(A^H A)/sigma^2 +
        lam L L^T``. The joint MAP (eq. 12) drops the ``log det`` term, so it rewards confident covariances
        (``-sum log L_pp``) even where the data see nothing; there ``H / lam ~ L L^T`` and the two would cancel.
        ``log det`` is approximated by the sum of the logs of the diagonal (``diag(Re(A^H A)) = f``)."""
        fraction = float(problem.operator.sampling.mean())

        def penalty(cholesky) -> torch.Tensor:
            diagonal = cholesky_precision_diagonal(cholesky)
            return 0.5 * torch.log(fraction / (lam * sigma**2) + diagonal).sum(dim=(1, 2, 3))

        return penalty

    @staticmethod
    def expected_penalty(deviations: torch.Tensor, lam: float):
        """``L -> 1/2 mean_s ||L^T d_s||^2 + (1 - 1/lam) sum_p l_p`` per image for deviations ``d_s = x_s - x`` of
        posterior samples, ``(S, B, 1, H, W)``.

        The first term estimates the trace ``1/2 tr(L^T H^-1 L)`` of the expected nll. The second makes the latent
        energy that of the Gaussian with precision ``lam L L^T`` (whose normaliser is ``-sum_p l_p`` + const, not
        ``-lam sum_p l_p`` as in ``lam * nll``): with it the EM step leaves the scale of ``L`` alone where the data
        see nothing (for ``lam != 1`` the scaled log det would shrink or grow ``L`` there at every step)."""

        def penalty(cholesky) -> torch.Tensor:
            total = sum(cholesky.mul_transpose(d).square().sum(dim=(1, 2, 3)) for d in deviations)
            return 0.5 * total / deviations.shape[0] + (1 - 1 / lam) * cholesky.log_diag.sum(dim=(1, 2, 3))

        return penalty

    @staticmethod
    def _converged(history, energy: torch.Tensor, tolerance: float) -> torch.Tensor:
        """Per image: ``E_{k-w} - E_k <= w * tolerance * |E_k|``, ``w`` = the (full) window length."""
        if tolerance <= 0 or len(history) < history.maxlen:
            return torch.zeros_like(energy, dtype=torch.bool)
        return (history[0] - energy) <= len(history) * tolerance * energy.abs()

    @staticmethod
    def _identity_start(problem: Problem, model, iterations: int):
        """Run mean+identity (its tuned defaults for ``problem``, no std map) and return its ``(x, z)``; its iterates
        are yielded as set-up steps (iteration 0). ``ValueError`` when the identity model of the weight set does not
        share ``model``'s encoder and mean decoder (another latent space)."""
        identity = MeanIdentity()
        base = common.bundled_model(identity.covariance_kind, problem.device, problem.weight_set)
        if not common.same_latent_space(base, model):
            raise ValueError("warm_start=identity needs the identity and structured models of one training run (the "
                             "same encoder and mean decoder); this weight set's differ")
        params = identity.resolve_params({**identity.defaults_for(problem), "posterior_samples": 0})
        x, z = problem.zero_filled(), None
        for step in identity.iterate(problem, params, iterations):
            x, z = step.image, step.extras["latent"]
            yield Step(0, x, step.objective, {"phase": "warm start (mean+identity)"})
        return x.detach().clone(), z.detach().clone()

    def iterate(self, problem: Problem, params: dict[str, Any], iterations: int) -> Iterator[Step]:
        """Block coordinate descent on the images that have not converged yet: a converged image leaves the working
        batch (its x and z stay as they are), so no work is spent on it and its result does not depend on the other
        images of the batch. Stops when all images have converged or after ``iterations``."""
        model = common.bundled_model(self.covariance_kind, problem.device, problem.weight_set)
        sigma = effective_sigma(problem)
        lam, mu = params["lam"], params["mu"]
        if params.get("warm_start") == "identity":
            x_all, z_all = yield from self._identity_start(problem, model, iterations)
        else:
            x_all = problem.zero_filled()
            with torch.no_grad():
                z_all = model.encode(x_all)[0]
        work = torch.arange(x_all.shape[0], device=x_all.device)  # images still being optimised
        sub, x = problem, x_all
        decoded = DecodedLatent.decode(model, z_all)
        z_optimiser = Z_OPTIMISERS[params["z_optimiser"]](x.shape[0], params["z_step_size"], x.device)
        penalty = self.marginal_penalty(problem, sigma, lam) if params["precision_penalty"] == "marginal" else None
        sampler = (PerturbAndMAP(problem, params["penalty_samples"], seed_offset=4099)
                   if params["precision_penalty"] == "expected" else None)
        if sampler is not None:
            with torch.no_grad():
                samples = sampler.solve(problem, decoded.cholesky.detach(), decoded.mean.detach(), x, sigma, lam,
                                        params["cg_iterations"])
            penalty = self.expected_penalty(samples - x, lam)
        z_optimiser.penalty = penalty
        # with expected: the energy's penalty changes with the samples at every x-update, so successive energies
        # are not comparable and every iteration runs
        tolerance = params["tolerance"] if sampler is None else 0.0
        energy_all = self.objective(problem, x, decoded, lam, mu, sigma, penalty)
        history: collections.deque[torch.Tensor] = collections.deque(maxlen=self.convergence_window)
        for iteration in range(1, iterations + 1):
            history.append(energy_all[work])
            # x-update: exact minimiser of the quadratic for fixed z
            with torch.no_grad():
                cholesky, mean = decoded.cholesky.detach(), decoded.mean.detach()
                x, _ = solve_quadratic_x(
                    sub, cholesky.precision_mul, cholesky.precision_mul(mean), x, sigma, lam, params["cg_iterations"],
                    precision_diagonal=cholesky_precision_diagonal(cholesky),
                )
                if sampler is not None:  # the posterior at the new x-update, for the expected nll
                    samples = sampler.solve(sub, cholesky, mean, x, sigma, lam, params["cg_iterations"])
                    penalty = z_optimiser.penalty = self.expected_penalty(samples - x, lam)
            # z-update: line-searched (L-BFGS or gradient) steps on the latent energy
            decoded = z_optimiser.run(model, x, decoded, mu, params["z_steps"])
            energy = self.objective(sub, x, decoded, lam, mu, sigma, penalty)
            # fresh tensors: the previous step's image may still be shown or stored by the caller
            x_all, z_all, energy_all = x_all.clone(), z_all.clone(), energy_all.clone()
            x_all[work], z_all[work], energy_all[work] = x, decoded.z, energy
            keep = ~self._converged(history, energy, tolerance)
            done = not bool(keep.any())
            if not done and not bool(keep.all()):  # drop the converged images from the working batch
                work, x = work[keep], x[keep]
                sub = problem.rows(work)
                decoded = DecodedLatent.decode(model, decoded.z[keep])
                z_optimiser.restrict(keep)
                if sampler is not None:
                    sampler.restrict(keep)
                history = collections.deque((h[keep] for h in history), maxlen=self.convergence_window)
            extras = {"latent": z_all}
            last = done or iteration == iterations
            if last:
                extras["converged"] = done
                extras["weights"] = common.model_weights_note(self.covariance_kind, problem.weight_set)
                if params["posterior_samples"] > 0:
                    final = DecodedLatent.decode(model, z_all) if x_all.shape[0] != x.shape[0] else decoded
                    with torch.no_grad():  # as posterior_std, keeping a few of the draws
                        samples = posterior_samples(
                            problem, final.cholesky.detach(), final.mean.detach(), x_all, sigma, lam,
                            max(params["posterior_samples"], 2), params["cg_iterations"],
                        )
                        if params["latent_std"] > 0:
                            samples = samples + params["latent_std"] * latent_deviations(
                                problem, model, x_all, samples.shape[0])
                        extras["std_map"] = samples.std(dim=0)
                        extras["samples"] = samples[:KEPT_SAMPLES].clone()
            yield Step(iteration, x_all, float(energy_all.sum()), extras)
            if last:
                return


@register
class MeanIdentity(JointGenerativeReconstruction):
    name = "mean+identity"
    title = "VAE mean + identity covariance"
    description = "eq. 12 with Sigma = rho I (Duff et al. 2023 ablation)"
    covariance_kind = "identity"
    #: (a warm start from itself means nothing)
    parameters = tuple(p for p in JointGenerativeReconstruction.parameters if p.name != "warm_start")


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
