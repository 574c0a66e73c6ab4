"""More generative priors: the invertible flow prior (Asim et al. 2020) and the variational latent posterior
(Marinescu et al., BRGM). Importing registers ``flow-prior`` and ``latent-vi``."""

from . import flow_prior, latent_vi  # noqa: F401  (registers the methods)
