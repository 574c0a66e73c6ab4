"""Generative reconstructions: the VAE regulariser family (``mean+identity``, ``mean+diagonal``, ``mean+covar``),
range search (Bora et al. 2017) and latent + generator tuning (Narnhofer et al. 2019)."""

from . import joint, narnhofer, range_search  # noqa: F401  (registers the methods)
