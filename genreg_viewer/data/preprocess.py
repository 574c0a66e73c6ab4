"""Preprocessing of 2-D slices into the paper's image domain, and fastMRI's k-space -> image conventions.

The paper (Duff et al. 2023, Sec. 4.1) takes the fastMRI ground-truth reconstruction of a slice, resizes it to
128 x 128 with an anti-aliasing filter and scales it linearly to [0, 1]. :func:`preprocess` does exactly that:

1. magnitude of complex input, check the values are finite;
2. centre crop to a square of side ``min(H, W)`` (so a non-square image is never stretched);
3. resize to ``size x size`` with Pillow's Lanczos filter (:data:`RESAMPLE_FILTER`, a windowed sinc whose support
   Pillow widens by the reduction factor, so down-sampling is anti-aliased; it also up-samples smoothly, which a
   box filter would not);
4. linear rescale ``x -> (x - min x) / (max x - min x)`` to [0, 1] (done after the resize, so the small overshoot
   of the Lanczos kernel at sharp edges does not leave values outside [0, 1]).

``size=None`` keeps the full field of view: no crop and no resize, only steps 1 and 4.

For raw k-space, :func:`kspace_to_image` follows the fastMRI reference code: ``ifft2c(k) = fftshift(ifft2(
ifftshift(k), norm="ortho"))`` over the last two axes, root-sum-of-squares over coils, then a centre crop to the
reconstruction matrix (320 x 320 for the knee data) in each axis that is larger.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..defaults import IMAGE_SIZE
from .errors import DataError
from .limits import check_side

#: Pillow filter used to resize slices (see module docstring for why Lanczos).
RESAMPLE_FILTER = Image.Resampling.LANCZOS

#: fastMRI's reconstruction matrix for the knee data (used when the file carries no ISMRMRD header).
FASTMRI_RECON_SIZE = (320, 320)

#: smallest side accepted for a 2-D image
MIN_SIDE = 4


def as_real_image(image2d, what: str = "image") -> np.ndarray:
    """Validate a 2-D array and return it as float64; complex input becomes its magnitude ``|x|``."""
    array = np.asarray(image2d)
    if array.dtype.kind not in "biufc" or array.dtype.fields is not None:  # not dates, durations, text, records
        raise DataError(f"{what} must hold numbers, got dtype {array.dtype}")
    if array.ndim != 2:
        raise DataError(f"{what} must be a 2-D array (H, W), got shape {array.shape}")
    if min(array.shape) < MIN_SIDE:
        raise DataError(f"{what} is too small ({array.shape[0]} x {array.shape[1]}); each side needs "
                        f"at least {MIN_SIDE} pixels")
    array = np.abs(array) if np.iscomplexobj(array) else array
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise DataError(f"{what} contains {bad} NaN or infinite value(s)")
    return array


def centre_crop(array: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Crop the last two axes to ``shape`` around the centre, as fastMRI's ``center_crop``: the window starts at
    ``(n - crop) // 2``. An axis already no larger than the crop is kept whole."""
    rows, cols = array.shape[-2:]
    crop_rows, crop_cols = min(shape[0], rows), min(shape[1], cols)
    top, left = (rows - crop_rows) // 2, (cols - crop_cols) // 2
    return array[..., top : top + crop_rows, left : left + crop_cols]


def centre_crop_square(array: np.ndarray) -> np.ndarray:
    """Centre crop the last two axes to a square of side ``min(H, W)``."""
    side = min(array.shape[-2:])
    return centre_crop(array, (side, side))


def rescale_unit(array: np.ndarray, what: str = "image") -> np.ndarray:
    """Linear rescale to [0, 1]: ``(x - min x) / (max x - min x)``; a constant image cannot be rescaled."""
    low, high = float(array.min()), float(array.max())
    if not high > low:
        raise DataError(f"{what} is constant (every pixel is {low:g}) and cannot be scaled to [0, 1]")
    return (array - low) / (high - low)


def resize_image(array: np.ndarray, size: int) -> np.ndarray:
    """Resize a real 2-D array to ``size x size`` with :data:`RESAMPLE_FILTER` (Pillow, 32-bit float mode)."""
    if array.shape == (size, size):
        return array.astype(np.float32)
    image = Image.fromarray(np.ascontiguousarray(array, dtype=np.float32))
    return np.asarray(image.resize((size, size), RESAMPLE_FILTER), dtype=np.float32)


def preprocess(image2d, size: int | None = IMAGE_SIZE) -> np.ndarray:
    """Turn a 2-D slice into a ``float32 (size, size)`` image in [0, 1] (see the module docstring for the steps).

    ``size=None`` keeps the original field of view and resolution (no crop, no resize); the result is then
    ``(H, W)``. Raises :class:`DataError` for non-2-D, too small, non-finite or constant input, or a bad ``size``.
    """
    if size is not None and (isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < MIN_SIDE):
        raise DataError(f"size must be an integer of at least {MIN_SIDE} (or None for no resize), got {size!r}")
    if size is not None:

        check_side(size, "size")
    array = as_real_image(image2d)
    if size is not None:
        array = centre_crop_square(array)
        # pre-scale so that Pillow's float32 arithmetic works on O(1) numbers whatever the file's units
        array = resize_image(rescale_unit(array), int(size))
    return rescale_unit(array).astype(np.float32)


def ifft2c(kspace: np.ndarray) -> np.ndarray:
    """fastMRI's centred orthonormal inverse FFT over the last two axes:
    ``fftshift(ifft2(ifftshift(k), norm="ortho"))`` (k-space and image both with the centre in the middle)."""
    axes = (-2, -1)
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(kspace, axes=axes), axes=axes, norm="ortho"), axes=axes)


def fft2c(image: np.ndarray) -> np.ndarray:
    """Inverse of :func:`ifft2c`: ``fftshift(fft2(ifftshift(x), norm="ortho"))`` over the last two axes."""
    axes = (-2, -1)
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(image, axes=axes), axes=axes, norm="ortho"), axes=axes)


def root_sum_of_squares(coil_images: np.ndarray, axis: int = 0) -> np.ndarray:
    """Root-sum-of-squares coil combination ``sqrt(sum_c |x_c|^2)`` (fastMRI's ``rss``)."""
    return np.sqrt(np.sum(np.abs(coil_images) ** 2, axis=axis))


def kspace_to_image(kspace: np.ndarray, recon_size: tuple[int, int] | None = FASTMRI_RECON_SIZE) -> np.ndarray:
    """Magnitude image of one fastMRI k-space slice, as the fastMRI reference reconstructions are made.

    ``kspace`` is ``(rows, cols)`` (single-coil) or ``(coils, rows, cols)`` (multi-coil), centred. Returns
    ``|ifft2c(k)|`` for one coil or ``rss_c(ifft2c(k_c))`` for several, centre-cropped to ``recon_size`` in each
    axis that is larger (``None``: no crop).
    """
    kspace = np.asarray(kspace)
    if kspace.ndim not in (2, 3):
        raise DataError(f"a k-space slice must be (rows, cols) or (coils, rows, cols), got shape {kspace.shape}")
    coil_images = ifft2c(kspace.astype(np.complex128))
    image = np.abs(coil_images) if kspace.ndim == 2 else root_sum_of_squares(coil_images, axis=0)
    return image if recon_size is None else centre_crop(image, recon_size)
