"""Learned baselines: PnP-ADMM with a RealSN-DnCNN (Ryu et al. 2019), the variational network (Hammernik et al.
2018), and the deep image prior family (Ulyanov et al. 2018; Barbano et al. 2021). Importing registers them."""

from . import dip, pnp, varnet  # noqa: F401  (registers the methods)
