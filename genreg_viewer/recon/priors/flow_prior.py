"""Reconstruction with an invertible generative prior.

Asim, Daniels, Leong, Ahmed, Hand 2020, "Invertible generative models for inverse problems: mitigating
representation error and dataset bias", ICML 2020::

    min_z  ||A G(z) - y||^2 + gamma ||z||^2,       x = G(z*),

with ``G = f^{-1}`` the generative direction of the bundled normalising flow (:mod:`genreg_viewer.models.flow`),
whose latent prior is ``N(0, I)``. Because ``G`` is a bijection the range contains every image (no representation
error); ``gamma ||z||^2`` pulls towards likely images. Adam on ``z``, started at ``z = f(Re(A^H y))`` (the flow
latent of the zero-filled adjoint; ``init = adjoint``, the paper's choice) or at ``z = 0`` (``init = zero``).
Read as a negative log-posterior (Gaussian noise of std ``sigma``, latent prior ``N(0, I)``), the MAP objective is
``||A G(z) - y||^2 / (2 sigma^2) + ||z||^2 / 2``, i.e. ``gamma = sigma^2``; Asim et al. tune ``gamma`` instead.

Denoising: with the mask ``full`` (``--mask full``) ``A = F`` is unitary, so ``||A G(z) - y||^2 =
||G(z) - F^H y||^2`` and the same method denoises the image ``Re(F^H y)`` (the noise std per pixel is ``sigma``).
"""

from __future__ import annotations

from typing import Any, Iterator

import torch

from ...models.flow import Flow, bundled_flow_available, bundled_flow_stem, flow_from_weights
from ...models.cache import cached_model
from ..base import Parameter, Problem, ReconMethod, Step
from ..registry import register

def flow_available() -> tuple[bool, str]:
    """Whether the bundled flow weights exist (tests replace this together with :func:`bundled_flow`)."""
    return bundled_flow_available()


def bundled_flow(device: torch.device, weight_set=None) -> Flow:
    """The flow of ``weight_set`` (a run passes its problem's; default: the bundled default set) or its fallback on
    ``device``: eval mode, frozen, loaded once per file version and device, shared between callers (who must not
    modify it)."""
    stem = bundled_flow_stem(weight_set)
    return cached_model(stem, device, "flow", lambda: flow_from_weights(stem, device)[0],
                        missing_hint="train them with 'genreg train flow'")


def check_image_size(flow: Flow, problem: Problem, method: str) -> None:
    """A clear error when the problem's image size is not the one the flow was trained on."""
    size = flow.config.image_size
    shape = tuple(problem.y.shape[-2:])
    if shape != (size, size):
        raise ValueError(f"{method}: the flow prior was trained on {size}x{size} images, this problem is "
                         f"{shape[0]}x{shape[1]}; resize the image or train a flow of that size "
                         "('genreg train flow --size')")


@torch.no_grad()
def initial_latent(flow: Flow, problem: Problem, init: str) -> torch.Tensor:
    """``f(clip(Re(A^H y), 0, 1))`` (``adjoint``) or zeros (``zero``), ``(B, H*W)``.

    The adjoint is clipped to the flow's data range first: the flow is trained on images in [0, 1], and an
    undersampled adjoint's negative streaks lie outside the support of its density, where ``f`` is not numerically
    invertible (the real-knee flow mapped some 12-spoke adjoints to latents of size 1e4-1e5, whose decoded images
    reached 1e6; clipped, every latent stayed below 11 and the round trip held to 1e-6). On the phantom flow the
    clip changes the result by a few hundredths of a dB."""
    if init == "adjoint":
        return flow.encode(problem.zero_filled().clamp(0, 1))[0]
    return torch.zeros((problem.batch_size, flow.dimension), device=problem.device)


def flow_objective(problem: Problem, flow: Flow, z: torch.Tensor, gamma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``||A G(z) - y||^2 + gamma ||z||^2`` per image and the image ``G(z)``."""
    image = flow.decode(z)
    return problem.operator.data_misfit(image, problem.y) + gamma * z.square().sum(1), image


@register
class FlowPrior(ReconMethod):
    name = "flow-prior"
    title = "Invertible flow prior (Asim et al. 2020)"
    description = "min_z ||A G(z) - y||^2 + gamma ||z||^2 over the latent of a normalising flow G, Adam; x = G(z)"
    category = "generative"
    default_iterations = 200
    tune_parameter = "gamma"
    tune_grid = (1e-3, 3e-3, 1e-2, 3e-2, 0.1)
    parameters = (
        Parameter("gamma", float, 1e-2, "weight of the latent penalty gamma ||z||^2 (MAP: gamma = sigma^2)", 0.0, 1e3,
                  log_scale=True),
        Parameter("learning_rate", float, 0.05, "Adam learning rate on z", 1e-6, 10.0, log_scale=True),
        Parameter("init", str, "adjoint", "start at the flow latent of the zero-filled adjoint, or at z = 0",
                  choices=("adjoint", "zero")),
    )

    def available(self) -> tuple[bool, str]:
        return flow_available()

    def iterate(self, problem: Problem, params: dict[str, Any], iterations: int) -> Iterator[Step]:
        flow = bundled_flow(problem.device, problem.weight_set)
        check_image_size(flow, problem, self.name)
        z = initial_latent(flow, problem, params["init"]).clone().requires_grad_(True)
        optimizer = torch.optim.Adam([z], lr=params["learning_rate"])
        for iteration in range(1, iterations + 1):
            optimizer.zero_grad(set_to_none=True)
            with torch.enable_grad():
                value, image = flow_objective(problem, flow, z, params["gamma"])
                value.sum().backward()
            extras = {"latent": z.detach().clone()} if iteration == iterations else {}
            # the reported image and objective belong to the same z (before this step's update)
            yield Step(iteration, image.detach(), float(value.detach().sum()), extras)
            if iteration < iterations:
                optimizer.step()
