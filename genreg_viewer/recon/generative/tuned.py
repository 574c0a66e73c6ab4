"""Tuned lambda and mu of the joint generative methods (``generative.json`` of the problem's weight set's ``tuned/``
folder, else ``resources/tuned/generative.json``; see :mod:`..tuned`)."""

from __future__ import annotations

from typing import Any

from ..base import Problem
from ..tuned import TUNED_DIR
from ..tuned import tuned_defaults as _tuned_defaults

TUNED_FILE = TUNED_DIR / "generative.json"  #: the phantom set's table (the tuning script's default output)


def tuned_defaults(method: str, problem: Problem) -> dict[str, Any]:
    return _tuned_defaults(TUNED_FILE.name, method, problem)
