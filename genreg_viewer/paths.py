"""Locations of bundled resources (sample slices, pretrained weights)."""

from __future__ import annotations

import os
from pathlib import Path

#: Repository-level ``resources/`` folder; ``GENREG_RESOURCES`` overrides it.
RESOURCES_DIR = Path(os.environ.get("GENREG_RESOURCES", Path(__file__).resolve().parent.parent / "resources"))
SAMPLES_DIR = RESOURCES_DIR / "samples"
#: pretrained weights; ``GENREG_WEIGHTS`` points the app, CLI and benchmarks at other (e.g. your own) weights
WEIGHTS_DIR = Path(os.environ.get("GENREG_WEIGHTS", RESOURCES_DIR / "weights"))


def default_sample_path() -> Path:
    """The bundled sample slice the application opens on."""
    return SAMPLES_DIR / "knee_phantom_000.npy"
