"""Shared pieces of the generative reconstructions: the bundled models and the exact x-update."""

from __future__ import annotations

import copy
import weakref
from typing import Callable

import torch

from ..base import Problem
from ..solvers import conjugate_gradient

#: sigma = 0 (noise-free data) is treated as this small noise level: near-hard data consistency, finite weights
MIN_SIGMA = 1e-3


def effective_sigma(problem: Problem) -> float:
    return max(float(problem.sigma), MIN_SIGMA)


def bundled_model(kind: str, device: torch.device, weight_set=None):
    """The generative model of covariance ``kind`` from ``weight_set`` (a run passes its problem's; default: the
    bundled default set) or its fallback on ``device``: loaded once
    per file version and device through the process-wide network cache
    (:func:`~genreg_viewer.models.vae.cached_generative_model`), eval mode, parameters frozen, shared between callers,
    who must not modify it."""
    from ...models.vae import cached_generative_model, model_file_name
    from ...weight_sets import weights_dir

    return cached_generative_model(kind, weights_dir(model_file_name(kind), weight_set), device)


def same_latent_space(first, second) -> bool:
    """Whether two VAEs have the same encoder and mean decoder (equal tensors), so a latent of one means the same
    image to the other (the three covariance models of one training run do: stage 2 keeps stage 1's networks)."""
    if first is second:
        return True
    pairs = ((first.encoder, second.encoder), (first.mean_decoder, second.mean_decoder))
    for a, b in pairs:
        state_a, state_b = a.state_dict(), b.state_dict()
        if state_a.keys() != state_b.keys():
            return False
        if not all(state_a[k].shape == state_b[k].shape and torch.equal(state_a[k], state_b[k]) for k in state_a):
            return False
    return True


def model_weights_note(kind: str, weight_set=None) -> str:
    """Which weight set supplies the model of ``kind`` (for a run's notes)."""
    from ...models.vae import model_file_name
    from ...weight_sets import find_weights, weights_note

    return weights_note(find_weights(model_file_name(kind), weight_set)[0], weight_set)


def model_available(kind: str) -> tuple[bool, str]:
    """Whether the model of ``kind`` exists in the set availability checks look in (see
    :func:`~genreg_viewer.models.vae.bundled_model_available`), and why not."""
    try:
        from ...models.vae import bundled_model_available
    except ImportError as exc:  # models not installed in this checkout
        return False, f"generative models unavailable: {exc}"
    return bundled_model_available(kind)


class InferenceDecoders:
    """The mean and covariance decoders of a frozen VAE prepared for evaluation: every batch normalisation folded
    into the convolution before it and the weights in channels-last layout.

    In eval mode a batch norm is the affine map ``gamma (h - m) / sqrt(v + eps) + beta`` of the conv output ``h = W
    * u + b``, so the pair is the single conv with ``W' = W gamma / sqrt(v + eps)`` and ``b' = (b - m) gamma /
    sqrt(v + eps) + beta`` (:func:`torch.nn.utils.fusion.fuse_conv_bn_eval`): the same ``G(z)`` and ``L(z)`` up to
    float32 rounding, differentiable in ``z``, in fewer operations. Built by :func:`inference_decoders`."""

    def __init__(self, model) -> None:
        self.model = model
        self.mean_decoder = _folded(model.mean_decoder)
        covariance = getattr(model, "covariance_decoder", None)
        self.covariance_decoder = None if covariance is None else _folded(covariance)
        self.tensors = (*model.parameters(), *model.buffers())
        self.version = _versions(self.tensors)

    def decode(self, z: torch.Tensor):
        """``(G(z), L(z))`` as ``model.decode_mean(z)``, ``model.decode_cholesky(z)``."""
        self.model._check_latent(z)
        mean = self.mean_decoder(z).contiguous()
        if self.covariance_decoder is None:  # identity: a constant factor
            return mean, self.model.decode_cholesky(z)
        return mean, self.model.decode_cholesky_from_channels(self.covariance_decoder(z).contiguous())


def _folded(decoder: torch.nn.Module) -> torch.nn.Module:
    """A frozen copy of ``decoder`` with each ``Conv2d`` followed by a ``BatchNorm2d`` (as ``conv_x`` / ``norm_x``
    attribute pairs of a block) merged into one conv, in channels-last layout."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    folded = copy.deepcopy(decoder).eval()
    for module in folded.modules():
        for name, child in list(module.named_children()):
            if not (name.startswith("norm") and isinstance(child, torch.nn.BatchNorm2d)):
                continue
            conv = getattr(module, "conv" + name[len("norm"):], None)
            if isinstance(conv, torch.nn.Conv2d) and conv.out_channels == child.num_features:
                setattr(module, "conv" + name[len("norm"):], fuse_conv_bn_eval(conv, child))
                setattr(module, name, torch.nn.Identity())
    for parameter in folded.parameters():
        parameter.requires_grad_(False)
    return folded.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # accepted at run time; not in the stubs


def _versions(tensors) -> tuple[int, ...]:
    """In-place modification counters of ``tensors`` (the model's parameters and buffers, listed when the copy was
    built: ``load_state_dict`` and optimiser steps write into them in place, so a changed model needs a new copy)."""
    return tuple(t._version for t in tensors)


_INFERENCE_DECODERS: "weakref.WeakKeyDictionary[torch.nn.Module, InferenceDecoders]" = weakref.WeakKeyDictionary()


def inference_decoders(model) -> InferenceDecoders | None:
    """:class:`InferenceDecoders` of ``model``, built once per model and parameter version; ``None`` (decode with
    the model itself) for a model in training mode (its batch norms use batch statistics) or one without the VAE's
    two decoders."""
    if model.training or not hasattr(model, "mean_decoder") or not hasattr(model, "decode_cholesky_from_channels"):
        return None
    cached = _INFERENCE_DECODERS.get(model)
    if cached is None or cached.version != _versions(cached.tensors):
        cached = _INFERENCE_DECODERS[model] = InferenceDecoders(model)
    return cached


def real_gram(problem: Problem) -> Callable[[torch.Tensor], torch.Tensor]:
    """``v -> Re(A^H A v)``: the Gram operator of ``A`` acting on real images."""
    return problem.operator.normal_real


def solve_quadratic_x(
    problem: Problem,
    precision_mul: Callable[[torch.Tensor], torch.Tensor],
    prior_rhs: torch.Tensor,
    x0: torch.Tensor,
    sigma: float,
    lam: float,
    iterations: int,
    tolerance: float = 1e-5,
    data: torch.Tensor | None = None,
    precision_diagonal: torch.Tensor | None = None,
) -> tuple[torch.Tensor, int]:
    """Exact minimiser over real x of ``1/(2 sigma^2)||A x - y||^2 + lam/2 (x - G)^T P (x - G)``.

    Normal equations (paper eq. 12 with z fixed): ``(Re(A^H A)/sigma^2 + lam P) x = Re(A^H y)/sigma^2 + lam P G``,
    with ``prior_rhs = P G`` precomputed and ``P = L L^T`` applied by ``precision_mul``. Solved by conjugate
    gradients warm-started at ``x0`` (each CG step lowers the quadratic, so the objective never increases).
    ``data`` replaces ``Re(A^H y)`` (perturb-and-MAP passes perturbed data). With ``precision_diagonal``
    (``diag(P)``, see :func:`cholesky_precision_diagonal`) CG is Jacobi-preconditioned by
    ``diag(Re(A^H A))/sigma^2 + lam diag(P)``, where ``diag(Re(A^H A))`` is the sampling fraction (orthonormal FFT).
    ``Re(A^H A)/sigma^2 = F^H (D/sigma^2) F`` is applied with the half-spectrum weights ``D/sigma^2`` computed once
    per solve (one real FFT pair per product).
    """
    inv_var = 1.0 / sigma**2
    operator = problem.operator
    data_rhs = operator.adjoint_real(problem.y) if data is None else data
    rhs = inv_var * data_rhs + lam * prior_rhs
    shape = tuple(operator.shape)
    weights = inv_var * operator.real_gram_weights.to(x0.device)[..., : shape[1] // 2 + 1]

    def apply(v: torch.Tensor) -> torch.Tensor:
        gram = torch.fft.irfft2(torch.fft.rfft2(v, norm="ortho") * weights, s=shape, norm="ortho")
        return gram.add_(precision_mul(v), alpha=lam)

    inverse_diagonal = None
    if precision_diagonal is not None:
        inverse_diagonal = 1.0 / (inv_var * operator.sampling.mean() + lam * precision_diagonal)
    return conjugate_gradient(apply, rhs, x0, iterations, tolerance, inverse_diagonal)


def cholesky_precision_diagonal(cholesky) -> torch.Tensor:
    """``diag(L L^T)_q = sum_p L_qp^2 = exp(2 l_q) + sum_j w_j(q - off_j)^2``, shape ``(B, 1, H, W)``: the
    factor with squared entries (log-diagonal ``2 l``, weights ``w^2``) applied to the all-ones image."""
    squared = type(cholesky)(2 * cholesky.log_diag, cholesky.off_diag.square(), cholesky.neighbourhood)
    return squared.mul(torch.ones_like(cholesky.log_diag))
