"""The application's panels: sampling, method, comparison, covariance inspector and sweeps."""
