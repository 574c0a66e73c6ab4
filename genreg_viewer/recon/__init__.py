"""Reconstruction methods: one registry, progress iterators, cancellation and tuning.

Importing this package registers every built-in method.
"""

from .base import Parameter, ParameterError, Problem, ProgressState, ReconMethod, ReconResult, Step
from .registry import all_methods, get_method, method_names, register
from .runner import iterate_progress, run_method, tune_parameter

import importlib.util as _importlib_util

# Importing the method modules registers their methods. Modules land one by one while the project grows.
for _module in ("classical", "generative", "learned", "priors"):
    if _importlib_util.find_spec(f"{__name__}.{_module}") is not None:
        __import__(f"{__name__}.{_module}")

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
