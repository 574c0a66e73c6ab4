"""Reconstruction methods: one registry, progress iterators, cancellation and tuning.

Importing this package registers every built-in method.
"""

from .base import Parameter, ParameterError, Problem, ProgressState, ReconMethod, ReconResult, Step
from .registry import all_methods, get_method, method_names, register
from .runner import NonFiniteResultError, check_finite_result, iterate_progress, run_method
from ..tuning import tune_parameter  # the grid search of `genreg recon --tune` (genreg_viewer.tuning)

# Importing the method modules registers their methods.
from . import classical, generative, learned, priors  # noqa: F401

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
    "check_finite_result",
    "NonFiniteResultError",
    "tune_parameter",
]
