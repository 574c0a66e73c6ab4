"""Data: loading fastMRI .h5 / images / .npy (``loading``), preprocessing (``preprocess``), the synthetic knee
phantom (``phantom``) and building training/test slice sets (``dataset`` for fastMRI, ``mrnet``, ``refinegan``,
``dicom``, ``matfile``; ``merge`` joins sets; ``writer`` is their shared writer). See docs/DATA.md."""

from .dataset import SliceSetSummary, build_slice_set, load_slice_set, load_slice_set_sources
from .loading import (
    SUPPORTED_SUFFIXES,
    LoadedImage,
    centre_slice_indices,
    describe_file,
    file_attributes,
    load_image,
    load_volume_slices,
)
from .errors import DataError
from .preprocess import kspace_to_image, preprocess

__all__ = [
    "DataError", "LoadedImage", "SUPPORTED_SUFFIXES", "load_image", "load_volume_slices", "describe_file",
    "file_attributes", "centre_slice_indices", "preprocess", "kspace_to_image", "build_slice_set",
    "load_slice_set", "load_slice_set_sources", "SliceSetSummary",
]
