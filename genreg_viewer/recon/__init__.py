"""Reconstruction methods: one registry, progress iterators, cancellation and tuning.

Importing this package registers every built-in method.
"""

from .base import Parameter, ParameterError, Problem, ProgressState, ReconMethod, ReconResult, Step
from .registry import all_methods, get_method, method_names, register
from .runner import iterate_progress, run_method, tune_parameter

from . import classical  # noqa: E402,F401  (registers adjoint, lsq, tv)

__all__ = [
    "Parameter",
    "ParameterError",
    "Problem",
    "ProgressState",
    "ReconMethod",
    "ReconResult",
    "Step",
    "all_methods",
    "get_method",
    "iterate_progress",
    "method_names",
    "register",
    "run_method",
    "tune_parameter",
]
