"""Where ground-truth images come from: files (through :func:`genreg_viewer.data.loading.load_image`), the
bundled sample slice, or the synthetic knee phantom."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.loading import HDF5_SUFFIXES, IMAGE_SUFFIXES, SUPPORTED_SUFFIXES, load_image
from ..data.phantom import knee_phantom
from ..defaults import IMAGE_SIZE
from ..paths import default_sample_path
from .experiment import ImageInfo


def _patterns(suffixes) -> str:
    return " ".join(f"*{suffix}" for suffix in suffixes)


#: file types offered by the Open dialog
IMAGE_FILTER = ";;".join((
    f"Images and volumes ({_patterns(SUPPORTED_SUFFIXES)})",
    f"fastMRI volumes ({_patterns(HDF5_SUFFIXES)})",
    "NumPy arrays (*.npy *.npz)",
    f"Images ({_patterns(IMAGE_SUFFIXES)})",
    "All files (*)",
))


def load_image_file(
    path: str | Path, slice_index: int | None = None, size: int = IMAGE_SIZE, key: str | None = None
) -> tuple[np.ndarray, ImageInfo]:
    """One ``size x size`` slice in [0, 1] from ``path`` (``DataError``, a ``ValueError``, for bad files).

    ``key`` names the HDF5 dataset to read; without it an HDF5 file with no known image dataset raises
    :class:`~genreg_viewer.data.loading.ImageKeyError`, whose ``candidates`` the caller can offer.
    """
    loaded = load_image(path, slice_index=slice_index, size=size, key=key)
    info = ImageInfo(source=str(path), slice_index=loaded.slice_index, num_slices=int(loaded.num_slices),
                     path=str(path), key=key, note=loading_note(loaded.meta, size))
    return np.asarray(loaded.image, dtype=np.float32), info


#: Pillow modes that hold colour
COLOUR_MODES = ("RGB", "RGBA", "P", "CMYK", "YCbCr", "LAB", "HSV", "LA", "PA", "RGBX")


def loading_note(meta: dict, size: int) -> str:
    """What loading did to the file's image, in words: colour to grey, centre crop to a square, resize."""
    changes = []
    if meta.get("mode") in COLOUR_MODES:
        changes.append(f"converted from colour ({meta['mode']}) to grey")
    shape = meta.get("original_shape")
    if isinstance(shape, (list, tuple)) and len(shape) >= 2:
        height, width = int(shape[-2]), int(shape[-1])
        if height != width:
            changes.append(f"centre-cropped from {width}×{height} to {min(height, width)}×{min(height, width)}")
        if min(height, width) != size:
            changes.append(f"resized to {size}×{size}")
    return ", ".join(changes)


def phantom_image(seed: int = 0, size: int = IMAGE_SIZE) -> tuple[np.ndarray, ImageInfo]:
    """The synthetic knee phantom for ``seed``."""
    return knee_phantom(seed, size), ImageInfo(source=f"knee phantom (seed {seed})")


def default_image() -> tuple[np.ndarray, ImageInfo]:
    """The bundled sample slice, or the phantom for seed 0 when the sample is missing or unreadable."""
    sample = default_sample_path()
    if sample.exists():
        try:
            return load_image_file(sample)
        except (ValueError, OSError):
            pass
    return phantom_image(0)
