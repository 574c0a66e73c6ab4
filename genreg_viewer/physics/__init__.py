"""MRI forward model: sampling masks, the undersampled Fourier operator and measurement noise."""

from .masks import (
    MASK_SAVE_SUFFIXES,
    MAX_MASK_SIDE,
    MAX_SPOKES,
    MaskError,
    cartesian_mask,
    check_mask_save_path,
    check_mask_shape,
    golden_angle_mask,
    load_mask,
    mask_fingerprint,
    mask_from_spec,
    radial_mask,
    random_mask,
    save_mask,
)
from .noise import MAX_SIGMA, Measurement, add_kspace_noise, check_sigma, simulate_measurement
from .operator import MRIOperator, RealLeastSquares, conjugate_symmetric_sampling

__all__ = [
    "MASK_SAVE_SUFFIXES",
    "MAX_MASK_SIDE",
    "MAX_SPOKES",
    "MRIOperator",
    "RealLeastSquares",
    "Measurement",
    "MaskError",
    "add_kspace_noise",
    "check_sigma",
    "MAX_SIGMA",
    "cartesian_mask",
    "conjugate_symmetric_sampling",
    "check_mask_save_path",
    "check_mask_shape",
    "golden_angle_mask",
    "load_mask",
    "mask_fingerprint",
    "mask_from_spec",
    "radial_mask",
    "random_mask",
    "save_mask",
    "simulate_measurement",
]
