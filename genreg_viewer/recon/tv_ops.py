"""Building blocks of the TV solver: finite differences, total variation and the dual projection (the data term
with its exact proximal map is :class:`~genreg_viewer.physics.operator.RealLeastSquares`).

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


def gradient(x: torch.Tensor) -> torch.Tensor:
    """Forward-difference gradient of ``x`` ``(B, 1, H, W)`` -> ``(B, 2, H, W)`` (rows, columns), Neumann boundary."""
    g = torch.zeros((x.shape[0], 2, *x.shape[-2:]), dtype=x.dtype, device=x.device)
    torch.sub(x[:, 0, 1:, :], x[:, 0, :-1, :], out=g[:, 0, :-1, :])
    torch.sub(x[:, 0, :, 1:], x[:, 0, :, :-1], out=g[:, 1, :, :-1])
    return g


def divergence(p: torch.Tensor) -> torch.Tensor:
    """``div p = -grad^T p`` for ``p`` ``(B, 2, H, W)`` -> ``(B, 1, H, W)`` (backward differences)."""
    rows, cols = p[:, 0], p[:, 1]
    d = torch.zeros_like(rows)
    d[:, :-1, :] += rows[:, :-1, :]
    d[:, 1:, :] -= rows[:, :-1, :]
    d[:, :, :-1] += cols[:, :, :-1]
    d[:, :, 1:] -= cols[:, :, :-1]
    return d.unsqueeze(1)


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
    if radius <= 0:
        return torch.zeros_like(p)
    return p * (radius / gradient_magnitude(p).clamp_min_(radius))
