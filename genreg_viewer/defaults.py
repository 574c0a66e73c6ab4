"""The project-wide defaults, declared once: the working image side and the standard problem setting.

The paper (Duff et al. 2023) and every bundled model work on ``IMAGE_SIZE x IMAGE_SIZE`` = 128 x 128 real images in
[0, 1]; files and phantoms are resized to it. The standard setting is ``DEFAULT_MASK_SPEC`` (25 radial spokes,
:func:`genreg_viewer.physics.mask_from_spec`) with complex Gaussian noise of std ``DEFAULT_NOISE_SIGMA`` on the real
and on the imaginary part of each sampled coefficient - the setting of the paper's main table, the tuned defaults and
the benchmarks. CLI options, the app's sampling panel and the evaluation default to these values. This module
imports nothing from the package, so every floor may use it.
"""

from __future__ import annotations

#: side of the images the models, the application and the training loaders work with
IMAGE_SIZE: int = 128
#: ``(IMAGE_SIZE, IMAGE_SIZE)``: the default shape of masks and of generated phantoms
IMAGE_SHAPE: tuple[int, int] = (IMAGE_SIZE, IMAGE_SIZE)
#: the default sampling pattern (``genreg mask --help`` lists the spec grammar)
DEFAULT_MASK_SPEC: str = "radial:25"
#: the default noise std (real and imaginary part of each sampled k-space coefficient)
DEFAULT_NOISE_SIGMA: float = 0.05
