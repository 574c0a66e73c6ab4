"""Locations of bundled resources (sample slices, pretrained weights, tuned defaults).

The ``resources/`` folder lives at the top level of the repository; setup.py installs it with the package as
``genreg_viewer/resources`` (package ``genreg_viewer.resources``). :func:`find_resources` is the one place that
decides which copy is used.
"""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def find_resources() -> Path:
    """The resources folder: ``$GENREG_RESOURCES`` when set, else the source checkout's top-level ``resources/``
    (a checkout or an editable install), else the copy installed inside the package (a wheel or ``pip install .``)."""
    override = os.environ.get("GENREG_RESOURCES")
    if override:
        return Path(override)
    checkout = _PACKAGE_DIR.parent
    # a checkout has pyproject.toml next to resources/; a bare site-packages/resources of some other package has not
    if (checkout / "pyproject.toml").is_file() and (checkout / "resources").is_dir():
        return checkout / "resources"
    return _PACKAGE_DIR / "resources"


#: the resources folder in use (see :func:`find_resources`)
RESOURCES_DIR = find_resources()
SAMPLES_DIR = RESOURCES_DIR / "samples"
#: pretrained weights; ``GENREG_WEIGHTS`` points the app, CLI and benchmarks at other (e.g. your own) weights
WEIGHTS_DIR = Path(os.environ.get("GENREG_WEIGHTS", RESOURCES_DIR / "weights"))


def default_sample_path() -> Path:
    """The bundled sample slice the application opens on."""
    return SAMPLES_DIR / "knee_phantom_000.npy"
