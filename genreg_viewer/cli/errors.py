"""Exceptions that are the user's input problem (printed as one line by the CLI, shown as dialogs by the GUI)."""

from __future__ import annotations

from ..data.errors import DataError
from ..physics.masks import MaskError
from ..recon.base import ParameterError

USER_ERRORS: tuple[type[BaseException], ...] = (
    MaskError,
    DataError,
    ParameterError,
    FileNotFoundError,
    ValueError,
    KeyError,
    RuntimeError,
    OSError,
)
