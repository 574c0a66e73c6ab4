"""Classical reconstructions: zero-filled adjoint, early-stopped least squares and total variation.

All three solve for a *real* image ``x`` ``(B, 1, H, W)`` from ``y = A x + n`` with ``A = M F``. For real ``x`` the
data term ``1/2 ||A x - y||^2`` has the Gram operator ``Re(A^H A) = F^H D F`` with ``D(k) = (M(k) + M(-k)) / 2``
(:class:`~genreg_viewer.physics.operator.RealLeastSquares`): it is *not* the projection ``A^H A`` (a coefficient
whose mirror ``-k`` is unsampled has ``D = 1/2``), and the constraint set (``box``: ``[0, 1]``, ``nonnegative``:
``x >= 0``, ``none``) couples sampled and unsampled frequencies. Both make the iterative methods differ
from the adjoint.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, Iterator

import torch

from . import tv_ops
from .base import Parameter, Problem, ReconMethod, Step
from .registry import register
from .solvers import batch_dot

#: ``constraint`` parameter values and the interval each one keeps the pixels in
CONSTRAINTS: dict[str, tuple[float, float]] = {
    "box": (0.0, 1.0),
    "nonnegative": (0.0, math.inf),
    "none": (-math.inf, math.inf),
}

CONSTRAINT_PARAMETER = Parameter(
    "constraint", str, "box",
    "pixel constraint: box = values in [0, 1], nonnegative = values >= 0, none = unconstrained",
    choices=tuple(CONSTRAINTS),
)


def _norms(x: torch.Tensor) -> torch.Tensor:
    """Euclidean norm of each image, ``(B,)``."""
    return x.flatten(1).norm(dim=1)


def _per_image(values: torch.Tensor) -> torch.Tensor:
    """``(B,)`` -> ``(B, 1, 1, 1)`` for broadcasting against images."""
    return values.view(-1, 1, 1, 1)


@register
class Adjoint(ReconMethod):
    """Zero-filled reconstruction ``x = Re(A^H y)``."""

    name = "adjoint"
    title = "Zero-filled adjoint"
    description = "x = Re(A^H y): inverse FFT of the zero-filled k-space"
    default_iterations = 1

    def iterate(self, problem: Problem, params: dict[str, Any], iterations: int) -> Iterator[Step]:
        x = problem.zero_filled()
        residual = problem.operator.forward(x) - problem.y
        yield Step(1, x, 0.5 * float((residual.abs() ** 2).sum()))


@register
class LeastSquares(ReconMethod):
    """Early-stopped least squares: ``min_x 1/2 ||A x - y||^2`` over real ``x`` in the constraint set ``C``.

    Projected gradient descent from ``x_0 = 0``, stopped after ``iterations`` steps::

        g_k     = Re(A^H (A x_k - y))
        x_{k+1} = P_C(x_k - t_k g_k)

    The trial step is the exact (Cauchy) step of the quadratic along the free part ``d`` of the gradient (entries
    not pushing against an active bound), ``t = ||d||^2 / <d, Re(A^H A) d>`` (between 1 and 2, since
    ``Re(A^H A)`` has eigenvalues 0, 1/2 and 1), halved until the Armijo condition for projected steps holds,
    ``f(x_{k+1}) <= f(x_k) + c <g_k, x_{k+1} - x_k>`` with ``c = 1e-4`` (Bertsekas 1999, sec. 2.3). Each image has
    its own step, so the objective of every image never increases. An image whose step can no longer decrease
    its objective (converged to float precision) is kept; when all are, the iteration ends early.

    What the iterations do: the first step from 0 is (up to the step length) the adjoint ``Re(A^H y)``, which
    halves every coefficient ``k`` whose mirror ``-k`` is unsampled. The next steps restore it to full size and
    fill ``-k`` by conjugate symmetry (signal and noise alike), and the box or non-negativity projection keeps
    filling unsampled frequencies a little. The unsampled frequencies are never fitted to noise, so the iteration
    count is a mild regulariser: at 25 spokes and ``sigma = 0.05`` the PSNR on the knee phantoms rises for about
    20 iterations and then stays flat (the default); at high noise (``sigma = 0.1``) the completed noise costs
    more than the restored signal gains, and fewer iterations (1 = the adjoint) are better.
    """

    name = "lsq"
    title = "Least squares (early-stopped projected gradient)"
    description = ("min 1/2||Ax-y||^2 over real x (in [0,1] by default): projected gradient descent from 0 with "
                   "Armijo steps, stopped early")
    parameters = (CONSTRAINT_PARAMETER,)
    default_iterations = 20

    armijo_constant = 1e-4
    max_backtracks = 30

    def iterate(self, problem: Problem, params: dict[str, Any], iterations: int) -> Iterator[Step]:
        lower, upper = CONSTRAINTS[params["constraint"]]
        data = problem.operator.data_term(problem.y)
        x = torch.zeros_like(data.rhs)
        objective = data.value(x)
        for iteration in range(1, iterations + 1):
            gradient = data.gradient(x)
            blocked = ((x <= lower) & (gradient > 0)) | ((x >= upper) & (gradient < 0))
            free = torch.where(blocked, torch.zeros_like(gradient), gradient)
            curvature = batch_dot(free, data.normal(free))
            free_norm = batch_dot(free, free)
            step = torch.where(curvature > 0, free_norm / curvature.clamp_min(1e-30), torch.ones_like(free_norm))
            step = _per_image(step.clamp(1.0, 1e6))
            accepted = torch.zeros_like(objective, dtype=torch.bool)
            candidate, candidate_objective = x, objective
            for _ in range(self.max_backtracks):
                trial = (x - step * gradient).clamp(lower, upper)
                trial_objective = data.value(trial)
                sufficient = trial_objective <= objective + self.armijo_constant * batch_dot(gradient, trial - x)
                newly = sufficient & ~accepted
                candidate = torch.where(_per_image(newly), trial, candidate)
                candidate_objective = torch.where(newly, trial_objective, candidate_objective)
                accepted |= sufficient
                if bool(accepted.all()):
                    break
                step = torch.where(_per_image(accepted), step, 0.5 * step)
            x, objective = candidate, candidate_objective
            yield Step(iteration, x, float(objective.sum()), {"step": step.flatten().tolist()})
            if not bool(accepted.any()):
                return  # no image can decrease its objective any more


#: TV weight with the best mean PSNR at 25 radial spokes and sigma = 0.05 on the knee phantoms
#: (``benchmarks/bench_classical.py --tune-alpha`` prints the grid search behind these numbers)
REFERENCE_ALPHA, REFERENCE_SIGMA = 0.02, 0.05


def default_alpha(sigma: float) -> float:
    """``alpha = 0.02 (sigma / 0.05)^(3/4)`` (``sigma`` floored at 0.005), to 3 significant digits.

    The best TV weight grows with the noise: on the knee phantoms (25 and 45 spokes) the grid-search optimum is
    about 0.01 at ``sigma = 0.02``, 0.02 at 0.05 and 0.03-0.05 at 0.1; the power law follows it within the flat
    top of the PSNR curve (a few hundredths of a dB). The floor keeps a little TV for noiseless data.
    """
    value = REFERENCE_ALPHA * (max(float(sigma), 0.005) / REFERENCE_SIGMA) ** 0.75
    return float(f"{value:.3g}")


class _LazyObjectiveStep(Step):
    """A :class:`Step` whose objective is computed on first access: the runner reads the objective only of the
    iterates it reports (and of the last one), so the other iterates never pay for its extra FFT."""

    _value: float | None = None
    _evaluate: Callable[[], float] | None = None

    def __init__(self, iteration: int, image: torch.Tensor, objective: Callable[[], float] | float,
                 extras: dict[str, Any]):
        self._evaluate = objective if callable(objective) else None
        super().__init__(iteration, image, None if callable(objective) else objective, extras)

    @property  # type: ignore[override]
    def objective(self) -> float | None:
        if self._value is None and self._evaluate is not None:
            self._value, self._evaluate = float(self._evaluate()), None
        return self._value

    @objective.setter
    def objective(self, value: float | None) -> None:
        self._value = value


@register
class TotalVariation(ReconMethod):
    """Isotropic total variation: ``min_x 1/2 ||A x - y||^2 + alpha TV(x) + i_C(x)`` over real images.

    ``TV(x) = sum_ij |(grad x)_ij|`` with forward differences (:mod:`~genreg_viewer.recon.tv_ops`); ``i_C`` is the
    indicator of the constraint set. Solved by the primal-dual hybrid gradient method (Chambolle and Pock 2011)
    with over-relaxation ``rho`` (Condat 2013) on ``min_x f(x) + h(K x)``::

        f(x) = 1/2 ||A x - y||^2,  K x = (grad x, x),  h(p, w) = alpha ||p||_{2,1} + i_C(w)

        x~ = prox_{tau f}(x - tau K^T (p, q))                  exact: diagonal in k-space for real x
        (p~, q~) = prox_{sigma h*}((p, q) + sigma K (2 x~ - x))  p~ = projection onto {|p_ij| <= alpha},
                                                               q~ = w - sigma P_C(w / sigma)
        (x, p, q) <- (x, p, q) + rho ((x~, p~, q~) - (x, p, q))

    The data term is handled exactly, ``prox_{tau f}(v) = F^H [(F v + tau F b) / (1 + tau D)]`` with
    ``b = Re(A^H y)``, so no inner solver is needed; the constraint is dualised through the identity block of
    ``K`` (without a constraint ``K = grad``). Steps ``tau sigma = 1 / ||K||^2`` with ``||K||^2 <= 8 + 1``
    (``||grad||^2 <= 8``) and ``rho = 1.9`` converge for any ratio ``tau / sigma``; the ratio sets the speed. It is
    ``tau / sigma = 0.06 / alpha`` (at most 100): the dual ``p`` lives on the scale ``alpha`` (``|p_ij| <= alpha``)
    and the image on the scale 1 (pixels in [0, 1]), and balancing the primal and dual steps by the ratio of those
    scales (``tau / sigma ~ ||x*|| / ||p*||``) keeps the iteration count nearly independent of ``alpha``. The
    constant 0.06 is from a grid search on knee phantoms and real knees for ``alpha`` from 0.0025 to 0.1 (a fixed
    ratio needs several times the iterations at the ends of that range; ``docs/BENCHMARKS.md``).

    Stopping rule: every :attr:`gap_check_every` iterations the primal-dual gap of the shown iterate ``x~``
    projected onto ``C`` and the dual ``p`` (:func:`~genreg_viewer.recon.tv_ops.primal_dual_gap`, an upper bound of
    the distance to the optimal objective) is computed; the iteration stops when ``gap <= tolerance P(x)`` for every
    image of the batch, or after ``iterations`` steps. For the unbounded constraints (``nonnegative``, ``none``)
    the gap is the partial gap over ``C`` intersected with [-1, 2]. Each iterate ``x~`` is shown projected onto
    ``C``; its objective is computed only when read (the runner reads those it reports and the last).
    """

    name = "tv"
    title = "Total variation (PDHG)"
    description = "min 1/2||Ax-y||^2 + alpha TV(x), x in [0,1] by default: Chambolle-Pock primal-dual iterations"
    parameters = (
        Parameter("alpha", float, REFERENCE_ALPHA, "weight of the isotropic total variation (default: grows with "
                  "the noise sigma, 0.02 at sigma 0.05)", minimum=0.0, maximum=10.0, log_scale=True),
        CONSTRAINT_PARAMETER,
        Parameter("tolerance", float, 5e-3, "stop when the primal-dual gap falls below this fraction of the "
                  "objective (0: run all iterations)", minimum=0.0, maximum=1.0, log_scale=True),
    )
    default_iterations = 1000
    tune_parameter = "alpha"
    tune_grid = (0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1)

    relaxation = 1.9  #: rho in (0, 2); 1.9 needs about half the iterations of rho = 1
    step_scale = 0.06  #: tau / sigma = step_scale / alpha (see the class docstring)
    max_step_ratio = 100.0  #: the ratio's cap, reached for alpha < 0.0006 (and alpha = 0)
    gap_check_every = 10  #: iterations between evaluations of the primal-dual gap (each costs about one iteration)
    gap_interval = (-1.0, 2.0)  #: bounds of the partial gap where the constraint set is unbounded

    def step_ratio(self, alpha: float) -> float:
        """``tau / sigma = min(step_scale / alpha, max_step_ratio)``."""
        return self.max_step_ratio if alpha * self.max_step_ratio <= self.step_scale else self.step_scale / alpha

    def defaults_for(self, problem: Problem) -> dict[str, Any]:
        """``alpha`` tuned for the problem's weight set's image domain (``tuned/classical.json``, e.g. real knees)
        for the nearest setting; otherwise :func:`default_alpha` of the problem's noise level (phantom-tuned)."""
        from ..tuning import CLASSICAL_TABLE, tuned_defaults

        return tuned_defaults(CLASSICAL_TABLE, self.name, problem) or {"alpha": default_alpha(problem.sigma)}

    def iterate(self, problem: Problem, params: dict[str, Any], iterations: int) -> Iterator[Step]:
        alpha, tolerance = params["alpha"], params["tolerance"]
        lower, upper = CONSTRAINTS[params["constraint"]]
        constrained = params["constraint"] != "none"
        gap_lower, gap_upper = max(lower, self.gap_interval[0]), min(upper, self.gap_interval[1])
        data = problem.operator.data_term(problem.y)
        norm = math.sqrt(tv_ops.GRADIENT_NORM_SQUARED + (1.0 if constrained else 0.0))
        ratio = self.step_ratio(alpha)
        tau, sigma = ratio / norm, 1.0 / (ratio * norm)
        rho = self.relaxation

        prox = data.prox(tau)
        x = data.rhs.clone()
        p = torch.zeros((x.shape[0], 2, *x.shape[-2:]), dtype=x.dtype, device=x.device)
        dual = torch.empty_like(p)  # the dual step's work space
        q = torch.zeros_like(x)
        adjoint_of_duals = torch.zeros_like(x)  # K^T (p, q) = -div p + q
        extras: dict[str, Any] = {}
        for iteration in range(1, iterations + 1):
            x_new = prox(torch.sub(x, adjoint_of_duals, alpha=tau))
            x_bar = torch.mul(x_new, 2.0).sub_(x)  # 2 x~ - x
            x.lerp_(x_new, rho)
            tv_ops.gradient(x_bar, out=dual).mul_(sigma).add_(p)
            p.lerp_(tv_ops.project_dual_ball_(dual, alpha), rho)
            tv_ops.divergence(p, out=adjoint_of_duals).neg_()
            if constrained:
                w = torch.add(q, x_bar, alpha=sigma)
                w.sub_(w.clamp(sigma * lower, sigma * upper))  # Moreau: prox of sigma i_C^* (sigma P_C(w / sigma))
                q.lerp_(w, rho)
                adjoint_of_duals.add_(q)

            image = x_new.clamp(lower, upper)
            objective: Callable[[], float] | float = functools.partial(self._objective, data, alpha, image)
            converged = False
            if tolerance > 0 and iteration % self.gap_check_every == 0:
                at = image if (gap_lower, gap_upper) == (lower, upper) else x_new.clamp(gap_lower, gap_upper)
                gap, primal = tv_ops.primal_dual_gap(data, alpha, at, p, gap_lower, gap_upper)
                relative_gap = gap / primal.clamp_min(torch.finfo(primal.dtype).tiny)
                extras = {"relative_gap": float(relative_gap.max())}
                converged = bool((relative_gap <= tolerance).all())
                if at is image:
                    objective = float(primal.sum())
            yield _LazyObjectiveStep(iteration, image, objective, {**extras, "converged": converged})
            if converged:
                return

    @staticmethod
    def _objective(data: Any, alpha: float, image: torch.Tensor) -> float:
        """``1/2 ||A x - y||^2 + alpha TV(x)`` of ``image``, summed over the batch."""
        return float((data.value(image) + alpha * tv_ops.total_variation(image)).sum())
