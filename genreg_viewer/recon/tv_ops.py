"""Building blocks of the TV solver: finite differences, total variation, the dual projection and the primal-dual
gap (the data term with its exact proximal map is :class:`~genreg_viewer.physics.operator.RealLeastSquares`).

All functions are batched over ``(B, 1, H, W)`` real tensors and run on any device without Python loops over
pixels.

Discrete gradient (forward differences, Neumann boundary: the last difference in each direction is zero)::

    (grad x)_0[i, j] = x[i+1, j] - x[i, j]   (i < H-1),  0 on the last row
    (grad x)_1[i, j] = x[i, j+1] - x[i, j]   (j < W-1),  0 on the last column

``div = -grad^T`` (so ``<grad x, p> = -<x, div p>``) and ``||grad||^2 <= 8`` (Chambolle 2004).
Isotropic total variation ``TV(x) = sum_ij sqrt((grad x)_0^2 + (grad x)_1^2)``.
"""

from __future__ import annotations

import torch

#: upper bound of ``||grad||_2^2`` for the 2-D forward-difference gradient (Chambolle 2004, Thm 3.1)
GRADIENT_NORM_SQUARED = 8.0


def gradient(x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """Forward-difference gradient of ``x`` ``(B, 1, H, W)`` -> ``(B, 2, H, W)`` (rows, columns), Neumann boundary.

    ``out``: a ``(B, 2, H, W)`` tensor to write the result into (all of it is overwritten) instead of a new one.
    """
    if out is None:
        g = torch.zeros((x.shape[0], 2, *x.shape[-2:]), dtype=x.dtype, device=x.device)
    else:
        g = out
        g[:, 0, -1, :] = 0.0
        g[:, 1, :, -1] = 0.0
    torch.sub(x[:, 0, 1:, :], x[:, 0, :-1, :], out=g[:, 0, :-1, :])
    torch.sub(x[:, 0, :, 1:], x[:, 0, :, :-1], out=g[:, 1, :, :-1])
    return g


def divergence(p: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``div p = -grad^T p`` for ``p`` ``(B, 2, H, W)`` -> ``(B, 1, H, W)`` (backward differences).

    ``out``: a ``(B, 1, H, W)`` tensor to write the result into (all of it is overwritten) instead of a new one.
    """
    rows, cols = p[:, 0], p[:, 1]
    if out is None:
        out = torch.empty_like(rows).unsqueeze(1)
    d = out[:, 0]
    d[:, :-1, :] = rows[:, :-1, :]
    d[:, -1, :] = 0.0
    d[:, 1:, :] -= rows[:, :-1, :]
    d[:, :, :-1] += cols[:, :, :-1]
    d[:, :, 1:] -= cols[:, :, :-1]
    return out


def gradient_magnitude(g: torch.Tensor) -> torch.Tensor:
    """Pointwise Euclidean norm ``|g|`` over the direction channel: ``(B, 2, H, W)`` -> ``(B, 1, H, W)``."""
    return torch.hypot(g[:, 0:1], g[:, 1:2])  # (torch.linalg.vector_norm over dim 1 is much slower on CPU)


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Isotropic TV ``sum |grad x|`` per batch item, shape ``(B,)``."""
    return gradient_magnitude(gradient(x)).flatten(1).sum(1)


def project_dual_ball(p: torch.Tensor, radius: float) -> torch.Tensor:
    """Pointwise projection of ``p`` ``(B, 2, H, W)`` onto ``{|p_ij| <= radius}``: ``p radius / max(|p|, radius)``.

    This is the proximal map of the convex conjugate of ``radius * ||.||_{2,1}`` (the isotropic TV dual).
    """
    return project_dual_ball_(p.clone(), radius)


def project_dual_ball_(p: torch.Tensor, radius: float) -> torch.Tensor:
    """:func:`project_dual_ball` in place (what the TV solver runs): ``p`` is overwritten with its projection and
    returned."""
    if radius <= 0:
        return p.zero_()
    return p.mul_(gradient_magnitude(p).clamp_min_(radius).reciprocal_().mul_(radius))


def primal_dual_gap(
    data, alpha: float, x: torch.Tensor, p: torch.Tensor, lower: float, upper: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(gap, primal)`` per batch item for ``P(x) = f(x) + alpha TV(x)`` over the interval ``[lower, upper]``.

    ``data`` is the data term ``f`` (:class:`~genreg_viewer.physics.operator.RealLeastSquares`), ``x`` a point of
    ``C = [lower, upper]`` (finite bounds) and ``p`` ``(B, 2, H, W)`` a dual point with ``|p_ij| <= alpha``. Since
    ``alpha TV(z) >= <grad z, p> = -<div p, z>`` and ``f(z) >= f(x) + <grad f(x), z - x>`` (convexity), every
    ``z`` in ``C`` has ``P(z) >= f(x) - <grad f(x), x> + min_{z in C} <c, z>`` with ``c = grad f(x) - div p``; the
    linear minimum is ``sum_i (lower c_i^+ - upper c_i^-)`` (a Frank-Wolfe-type lower bound, Jaggi 2013).
    The gap, ``P(x)`` minus that bound, is an upper bound of ``P(x) - min_C P``; written out it is a sum of
    nonnegative terms (no cancellation in floating point)::

        gap = sum_ij (alpha |(grad x)_ij| - <p_ij, (grad x)_ij>) + sum_i (c_i^+ (x_i - lower) + c_i^- (upper - x_i))

    It vanishes exactly at a saddle point ``(x*, p*)`` of ``f(x) + <grad x, p> + i_C(x) - i_{|p| <= alpha}(p)``:
    then ``p*`` attains ``alpha TV(x*)`` and ``-c`` lies in the normal cone of ``C`` at ``x*``. For an unbounded
    constraint set, bounding it gives the partial primal-dual gap of Chambolle and Pock (2011, eq. 3.2).
    """
    image_gradient = gradient(x)
    magnitude = gradient_magnitude(image_gradient)
    tv_term = (alpha * magnitude - (p * image_gradient).sum(1, keepdim=True)).flatten(1).sum(1)
    c = data.gradient(x) - divergence(p)
    box_term = (c.clamp_min(0.0) * (x - lower) + c.clamp_max(0.0) * (x - upper)).flatten(1).sum(1)
    primal = data.value(x) + alpha * magnitude.flatten(1).sum(1)
    return tv_term + box_term, primal
