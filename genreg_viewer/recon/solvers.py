"""Batched linear solvers used by several methods."""

from __future__ import annotations

from typing import Callable

import torch


def batch_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-item inner products ``<a_i, b_i>`` over all but the batch dimension, shape ``(B,)``."""
    return (a * b).flatten(1).sum(1)


def conjugate_gradient(
    apply_matrix: Callable[[torch.Tensor], torch.Tensor],
    rhs: torch.Tensor,
    x0: torch.Tensor | None = None,
    max_iterations: int = 50,
    tolerance: float = 1e-6,
) -> tuple[torch.Tensor, int]:
    """Solve ``M x = b`` for a symmetric positive definite ``M`` (given as a function), batched over dim 0.

    Standard CG (Hestenes-Stiefel). Every batch item has its own step sizes; iteration stops when all items reach
    ``||r|| <= tolerance * ||b||``. Each CG iteration decreases the quadratic ``1/2 x^T M x - b^T x`` of every item,
    so a warm start never makes the energy worse. Returns the solution and the number of iterations run.
    """
    x = torch.zeros_like(rhs) if x0 is None else x0.clone()
    r = rhs - apply_matrix(x) if x0 is not None else rhs.clone()
    p = r.clone()
    rr = batch_dot(r, r)
    threshold = (tolerance**2) * batch_dot(rhs, rhs).clamp_min(1e-30)
    shape = (-1,) + (1,) * (rhs.ndim - 1)
    iterations = 0
    for iterations in range(1, max_iterations + 1):
        if bool((rr <= threshold).all()):
            iterations -= 1
            break
        mp = apply_matrix(p)
        pmp = batch_dot(p, mp)
        active = rr > threshold
        alpha = torch.where(active, rr / pmp.clamp_min(1e-30), torch.zeros_like(rr))
        x = x + alpha.view(shape) * p
        r = r - alpha.view(shape) * mp
        rr_new = batch_dot(r, r)
        beta = torch.where(active, rr_new / rr.clamp_min(1e-30), torch.zeros_like(rr))
        p = r + beta.view(shape) * p
        rr = rr_new
    return x, iterations
