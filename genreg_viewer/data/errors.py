"""The data layer's user-facing error, on the lowest floor of :mod:`genreg_viewer.data` so that every module (the
limits, the loaders, the preprocessing) can raise it without importing another."""

from __future__ import annotations


class DataError(ValueError):
    """A data file or array that cannot be used, with a message saying what is wrong and what was expected."""
