"""Former home of the tuned-defaults tables, now :mod:`genreg_viewer.tuning`; kept as a re-export for code that
still imports it from here (``recon/classical.py``, external scripts)."""

from __future__ import annotations

from ..tuning import (
    MAX_PARAM_TEXT,
    MAX_TUNED_BYTES,
    MAX_TUNED_ENTRIES,
    TUNED_DIR,
    nearest_setting,
    tuned_defaults,
    tuned_table,
)

__all__ = ["MAX_PARAM_TEXT", "MAX_TUNED_BYTES", "MAX_TUNED_ENTRIES", "TUNED_DIR", "nearest_setting", "tuned_defaults",
           "tuned_table"]
