"""Plug-and-play ADMM with a RealSN-DnCNN denoiser (Ryu, Liu, Wang, Chen, Wang, Yin 2019, "Plug-and-play methods
provably converge with properly trained denoisers", ICML; PnP-ADMM of Venkatakrishnan et al. 2013).

ADMM for ``min_x 1/2 ||A x - y||^2 + g(x)`` over real images, with the proximal map of the (implicit) prior ``g``
replaced by the denoiser ``D_s`` at noise level ``s``::

    x_{k+1} = argmin_x 1/2 ||A x - y||^2 + rho/2 ||x - (z_k - u_k)||^2
    w_{k+1} = alpha x_{k+1} + (1 - alpha) z_k                    (over-relaxation, alpha in (0, 2))
    z_{k+1} = D_s(w_{k+1} + u_k)
    u_{k+1} = u_k + w_{k+1} - z_{k+1}

starting from ``x_0 = z_0 = Re(A^H y)``, ``u_0 = 0``; the iterate reported is ``z_k`` (the denoiser output).
``alpha = 1`` is plain ADMM; ``alpha > 1`` is the over-relaxed ADMM of Eckstein & Bertsekas (1992), which has the
same fixed points (``u`` stationary gives ``w = z``, hence ``x = z``). Here it matters: the unsampled k-space is
filled only through the denoiser's residual, a small change per iteration, so plain ADMM creeps (0.3 dB per doubling
of the iterations at 25 spokes); ``alpha = 1.8`` gains 0.3-0.4 dB at 100 iterations.

``denoiser_sigma`` and ``rho`` default to a grid search on validation phantoms per setting
(``resources/tuned/pnp.json``; the nearest setting in log sampling fraction and log sigma, as for the generative
methods). The optimum follows the MAP reading of the splitting: the z-step is the proximal map of ``g / rho`` and a
level-``s`` Gaussian denoiser is that of ``s^2 phi`` for a prior ``-log p = phi``, so ``g = rho s^2 phi`` against the
data term ``1/2 ||A x - y||^2 = sigma^2 (-log likelihood)``: the prior weight ``rho s^2`` should grow with the
measurement noise ``sigma^2`` (tuned: 0.0009 at 25 spokes and sigma 0.05, 0.00009 at sigma 0.0125) and, for a fixed
weight, a lower level ``s`` with a larger ``rho`` (more, gentler denoising steps) does better where it converges in
time (125 spokes).

The x-step is the data term's exact proximal map over *real* images, ``x = prox_l2(v, rho)`` with ``v = z_k - u_k``
(:meth:`~genreg_viewer.physics.operator.RealLeastSquares.prox_l2`): the normal equation
``(Re(A^H A) + rho I) x = Re(A^H y) + rho v`` is diagonal in k-space, ``x = F^H [F(Re(A^H y) + rho v) / (D + rho)]``
with the conjugate-symmetrised mask ``D(k) = (M(k) + M(-k)) / 2``.

RealSN (spectral normalisation of every convolution's operator norm) makes the denoiser residual ``I - D``
non-expansive, the condition in Ryu et al.'s convergence theorem (their strong-convexity assumption on the data term
does not hold for undersampled MRI; convergence is then observed rather than proved).
"""

from __future__ import annotations

from typing import Any, Iterator

import torch

from ...models.dncnn import RealSNDnCNN
from ...tuning import PNP_TABLE, tuned_defaults
from ..base import Parameter, ParameterError, Problem, ReconMethod, Step
from ..registry import register
from .common import data_objective, load_network, weights_status

DEFAULT_WEIGHTS = "dncnn"
TUNED_FILE = PNP_TABLE  #: in the weight set's tuned/ (see :mod:`genreg_viewer.tuning`)


def _build_denoiser(config: dict) -> RealSNDnCNN:
    bound = config.get("bound", 1.0)
    return RealSNDnCNN(config["layers"], config["channels"], bound)


def load_denoiser(name: str, device: torch.device, weight_set=None) -> tuple[RealSNDnCNN, dict, dict]:
    """The RealSN-DnCNN in weights ``name`` (bundled ``dncnn`` by default; bare names from ``weight_set``), cached,
    eval mode."""
    return load_network(name, _build_denoiser, device, weight_set)


@register
class PnPADMM(ReconMethod):
    name = "pnp-admm"
    title = "PnP-ADMM (RealSN-DnCNN)"
    description = "Plug-and-play ADMM with a spectrally normalised DnCNN denoiser (Ryu et al. 2019)"
    category = "learned"
    default_iterations = 100
    parameters = (
        Parameter("denoiser_sigma", float, 0.03,
                  "denoiser strength: the Gaussian noise level (image units, range [0, 1]) the denoiser removes "
                  "each iteration; larger = smoother", minimum=0.002, maximum=0.3, log_scale=True),
        Parameter("rho", float, 1.0,
                  "ADMM penalty rho: weight of the prior step against data consistency in the x-update "
                  "(larger = trust the denoiser more)", minimum=1e-3, maximum=1e3, log_scale=True),
        Parameter("relaxation", float, 1.8,
                  "ADMM over-relaxation alpha (Eckstein-Bertsekas): the denoiser sees alpha x + (1 - alpha) z + u; "
                  "1 = plain ADMM, up to 2 = faster progress, same fixed points", minimum=0.1, maximum=1.95),
        Parameter("weights", str, DEFAULT_WEIGHTS,
                  "denoiser weights: a name in resources/weights or a path stem (from 'genreg train denoiser')"),
    )
    tune_parameter = "denoiser_sigma"
    tune_grid = (0.005, 0.01, 0.015, 0.02, 0.03, 0.045, 0.07, 0.1)

    def available(self) -> tuple[bool, str]:
        return weights_status(DEFAULT_WEIGHTS, "genreg train denoiser")

    def defaults_for(self, problem: Problem) -> dict[str, Any]:
        """The tuned parameters of the nearest grid-searched setting (``resources/tuned/pnp.json``)."""
        return tuned_defaults(TUNED_FILE, self.name, problem)

    def iterate(self, problem: Problem, params: dict[str, Any], iterations: int) -> Iterator[Step]:
        denoiser, config, _ = load_denoiser(params["weights"], problem.device, problem.weight_set)
        level = float(params["denoiser_sigma"])
        low, high = config.get("sigma_range", [0.0, float("inf")])
        if not low * 0.5 <= level <= high * 1.5:
            raise ParameterError(
                f"denoiser_sigma {level:g} is outside the range the denoiser was trained on ({low:g} to {high:g})"
            )
        data, rho = problem.operator.data_term(problem.y), params["rho"]
        alpha = float(params["relaxation"])
        z = problem.zero_filled()
        u = torch.zeros_like(z)
        with torch.no_grad():
            for k in range(1, iterations + 1):
                x = data.prox_l2(z - u, rho)
                relaxed = alpha * x + (1.0 - alpha) * z
                z_next = denoiser(relaxed + u, level)
                u = u + relaxed - z_next
                change = float(((z_next - z).flatten(1).norm(dim=1) / z.flatten(1).norm(dim=1).clamp_min(1e-12)).max())
                z = z_next
                yield Step(k, z, data_objective(problem, z), {"relative_change": change})
