"""Classical reconstructions: zero-filled adjoint, least squares, total variation."""

from __future__ import annotations

from typing import Any, Iterator

from .base import Problem, ReconMethod, Step
from .registry import register


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
