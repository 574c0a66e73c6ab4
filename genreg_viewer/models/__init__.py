"""Networks and the sparse-Cholesky covariance operations."""
