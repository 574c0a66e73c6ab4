"""MRI forward model: sampling masks, the undersampled Fourier operator and measurement noise."""

from .masks import (
    MaskError,
    cartesian_mask,
    golden_angle_mask,
    load_mask,
    mask_fingerprint,
    mask_from_spec,
    radial_mask,
    random_mask,
    save_mask,
)
from .noise import Measurement, add_kspace_noise, simulate_measurement
from .operator import MRIOperator

__all__ = [
    "MRIOperator",
    "Measurement",
    "MaskError",
    "add_kspace_noise",
    "cartesian_mask",
    "golden_angle_mask",
    "load_mask",
    "mask_fingerprint",
    "mask_from_spec",
    "radial_mask",
    "random_mask",
    "save_mask",
    "simulate_measurement",
]
