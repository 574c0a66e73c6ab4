"""Deep image prior (Ulyanov, Vedaldi, Lempitsky 2018) and educated DIP (Barbano et al. 2021) for MRI.

Both fit the weights ``theta`` of a U-Net ``f_theta`` (:class:`genreg_viewer.models.unet.UNet`) to the measured data
of one image, minimising with Adam::

    L(theta) = 1/2 ||A f_theta(z) - y||^2 + tv_weight * TV_eps(f_theta(z))

``TV_eps(x) = sum_ij sqrt((x_{i+1,j} - x_ij)^2 + (x_{i,j+1} - x_ij)^2 + eps^2)`` is the smoothed isotropic total
variation (the DIP+TV of Baguer, Leuschner, Schmidt 2020, "Computed tomography reconstruction using deep image prior
and learned reconstruction methods"); ``tv_weight = 0`` is plain DIP. The number of iterations is the regulariser
(early stopping): the network fits the image structure before the noise.

* ``dip``: random initial weights (seeded by the problem seed) and a fixed random code ``z ~ U(0, 1)`` of image
  size, one channel, drawn from ``problem.generator()``; the learning rate ramps up over the first 100 iterations.
* ``edip``: the same network (plus a global residual connection, output = input + U-Net(input)) started from
  weights pretrained to map adjoint reconstructions of phantoms to the ground truth (``genreg train edip``), with the
  adjoint ``Re(A^H y)`` as input ``z``.

Every image of a batch gets its own network and optimiser (DIP is a per-image fit). Each step reports the network
output and loss *before* that step's Adam update.
"""

from __future__ import annotations

import copy
from typing import Any, Iterator

import torch

from ...models.unet import DIP_CHANNELS, UNet
from ..base import Parameter, Problem, ReconMethod, Step
from ..classical import default_alpha
from ..registry import register
from .common import load_network, weights_status

DEFAULT_EDIP_WEIGHTS = "edip"
TV_SMOOTHING = 1e-3


def smoothed_tv(x: torch.Tensor, eps: float = TV_SMOOTHING) -> torch.Tensor:
    """``TV_eps`` per batch item (forward differences, zero beyond the last row/column), shape ``(B,)``."""
    rows = torch.nn.functional.pad(x[..., 1:, :] - x[..., :-1, :], (0, 0, 0, 1))
    cols = torch.nn.functional.pad(x[..., :, 1:] - x[..., :, :-1], (0, 1, 0, 0))
    return torch.sqrt(rows.square() + cols.square() + eps * eps).flatten(1).sum(1)


def dip_loss(problem_operator, y: torch.Tensor, image: torch.Tensor, tv_weight: float) -> torch.Tensor:
    """``1/2 ||A x - y||^2 + tv_weight * TV_eps(x)`` summed over the batch."""
    loss = 0.5 * problem_operator.data_misfit(image, y).sum()
    if tv_weight > 0:
        loss = loss + tv_weight * smoothed_tv(image).sum()
    return loss


class _DeepImagePriorBase(ReconMethod):
    """Shared DIP loop. The default TV weight is the TV method's tuned ``alpha`` for the noise level
    (:func:`genreg_viewer.recon.classical.default_alpha`): both weigh ``TV`` against ``1/2 ||A x - y||^2``."""

    category = "learned"
    #: the learning rate ramps up linearly over this many iterations. Adam's first steps move every weight by about
    #: the learning rate whatever its gradient: a pretrained network would lose what it learned, and a randomly
    #: initialised one is thrown onto a plateau (DIP at 1e-2 from the first step: an almost flat image for ~100-200
    #: iterations, then still below the adjoint after 500)
    warmup_iterations = 1

    def networks_and_inputs(self, problem: Problem, params: dict[str, Any]) -> tuple[list[UNet], torch.Tensor]:
        """One trainable network per batch item and the network inputs ``(B, 1, H, W)``."""
        raise NotImplementedError

    def defaults_for(self, problem: Problem) -> dict[str, Any]:
        return {"tv_weight": default_alpha(problem.sigma)}

    def iterate(self, problem: Problem, params: dict[str, Any], iterations: int) -> Iterator[Step]:
        networks, inputs = self.networks_and_inputs(problem, params)
        divisor = networks[0].divisor
        if problem.y.shape[-1] % divisor or problem.y.shape[-2] % divisor:
            raise ValueError(f"{self.name} needs image sides divisible by {divisor}, got {tuple(problem.y.shape[-2:])}")
        optimizers = [torch.optim.Adam(net.parameters(), lr=params["learning_rate"]) for net in networks]
        tv_weight = float(params["tv_weight"])
        operator = problem.operator
        for k in range(1, iterations + 1):
            outputs, total = [], 0.0
            rate = params["learning_rate"] * min(1.0, k / self.warmup_iterations)
            for i, (net, optimizer) in enumerate(zip(networks, optimizers)):
                for group in optimizer.param_groups:
                    group["lr"] = rate
                optimizer.zero_grad(set_to_none=True)
                with torch.enable_grad():
                    image = net(inputs[i : i + 1])
                    loss = dip_loss(operator, problem.y[i : i + 1], image, tv_weight)
                    loss.backward()
                optimizer.step()
                outputs.append(image.detach())
                total += float(loss.detach())
            yield Step(k, torch.cat(outputs), total)


def _fresh_unet(seed: int, device: torch.device) -> UNet:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = UNet(1, DIP_CHANNELS)
    return net.to(device).train()


@register
class DeepImagePrior(_DeepImagePriorBase):
    name = "dip"
    title = "Deep image prior"
    description = ("Untrained U-Net fitted to the data from a random code, optional TV, early stopping "
                   "(Ulyanov et al. 2018)")
    default_iterations = 500
    warmup_iterations = 100
    parameters = (
        Parameter("learning_rate", float, 1e-2, "Adam step size for the network weights (ramped up over the "
                  "first 100 iterations)", minimum=1e-5, maximum=0.1, log_scale=True),
        Parameter("tv_weight", float, 0.02, "weight of the smoothed TV term (0 = plain DIP; Baguer et al. 2020); "
                  "default: the TV method's alpha for the noise level", minimum=0.0, maximum=10.0),
    )
    tune_parameter = "tv_weight"
    tune_grid = (0.0, 0.01, 0.03, 0.1, 0.3)

    def networks_and_inputs(self, problem: Problem, params: dict[str, Any]) -> tuple[list[UNet], torch.Tensor]:
        code = torch.rand(problem.y.shape, generator=problem.generator(0)).to(problem.device)
        networks = [_fresh_unet(problem.seed * 1000 + i, problem.device) for i in range(problem.batch_size)]
        return networks, code


def _build_unet(config: dict) -> UNet:
    return UNet(int(config["in_channels"]), tuple(int(c) for c in config["channels"]), int(config["skip_channels"]),
                bool(config.get("residual", False)))


@register
class EducatedDeepImagePrior(_DeepImagePriorBase):
    name = "edip"
    title = "Educated deep image prior"
    description = ("DIP warm-started from a U-Net pretrained on adjoint -> ground truth, input = adjoint "
                   "(Barbano et al. 2021)")
    default_iterations = 200
    warmup_iterations = 50
    parameters = (
        Parameter("learning_rate", float, 1e-3, "Adam step size for the network weights (ramped up over the "
                  "first 50 iterations)", minimum=1e-6, maximum=0.1, log_scale=True),
        Parameter("tv_weight", float, 0.02, "weight of the smoothed TV term (0 = none); default: the TV "
                  "method's alpha for the noise level", minimum=0.0, maximum=10.0),
        Parameter("weights", str, DEFAULT_EDIP_WEIGHTS,
                  "pretrained U-Net: a name in resources/weights or a path stem (from 'genreg train edip')"),
    )
    tune_parameter = "tv_weight"
    tune_grid = (0.0, 0.01, 0.03, 0.1, 0.3)

    def available(self) -> tuple[bool, str]:
        return weights_status(DEFAULT_EDIP_WEIGHTS, "genreg train edip")

    def networks_and_inputs(self, problem: Problem, params: dict[str, Any]) -> tuple[list[UNet], torch.Tensor]:
        pretrained, _, _ = load_network(params["weights"], _build_unet, problem.device, problem.weight_set)
        networks = []
        for _ in range(problem.batch_size):
            net = copy.deepcopy(pretrained)
            net.requires_grad_(True).train()
            networks.append(net)
        return networks, problem.zero_filled()
