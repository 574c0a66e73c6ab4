"""Networks and the sparse-Cholesky covariance operations."""

from .cholesky import SparseCholesky, channels_for, neighbour_offsets  # noqa: F401
