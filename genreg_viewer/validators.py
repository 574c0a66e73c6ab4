"""The value checks every floor shares, declared once: what counts as a finite number, a whole number and a seed.

One rule per notion, so a value that one entry point accepts is accepted by all (a seed of the CLI, of a session
file, of a mask spec or of a phantom): a *seed* is an ``int`` (or NumPy integer, never a bool) in ``[0, 2**63)``,
the range of torch's and NumPy's 64-bit generators. This module imports nothing from the package.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

#: seeds are 64-bit signed integers (torch and numpy generators): ``0 <= seed < MAX_SEED``
MAX_SEED = 2**63


def is_finite_number(value: Any) -> bool:
    """An int or float (not a bool) that is finite as a double (an integer of 1e309 is not: ``float`` overflows)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def is_whole_number(value: Any) -> bool:
    """An integer (Python or NumPy, not a bool), or a finite float with no fractional part (``3.0``)."""
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, (int, np.integer)):
        return True
    return isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer()


def check_seed(value: Any, what: str = "seed", error: type[Exception] = ValueError) -> int:
    """``value`` as an ``int`` in ``[0, MAX_SEED)``; anything else (floats, bools, strings, out of range) raises
    ``error`` (a ``ValueError`` subclass of the caller's layer, e.g. ``MaskError``) naming ``what``."""
    if isinstance(value, np.integer):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise error(f"{what} must be an integer, got {value!r}")
    if not 0 <= value < MAX_SEED:
        raise error(f"{what} must be between 0 and 2**63 - 1 = {MAX_SEED - 1}, got {value}")
    return int(value)
