"""Tuned lambda and mu of the joint generative methods: a re-export of :mod:`genreg_viewer.tuning` for code that
still imports them from here (``joint.py``, external scripts)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...tuning import GENERATIVE_TABLE, TUNED_DIR
from ...tuning import tuned_defaults as _tuned_defaults

if TYPE_CHECKING:
    from ..base import Problem

TUNED_FILE = TUNED_DIR / GENERATIVE_TABLE  #: the phantom set's table (the tuning script's default output)


def tuned_defaults(method: str, problem: Problem) -> dict[str, Any]:
    return _tuned_defaults(GENERATIVE_TABLE, method, problem)
