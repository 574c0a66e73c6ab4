"""The covariance inspector's model work, free of Qt: which runs to inspect, and decoding ``L(z)`` with its
variance map so that clicks only need two triangular solves.

For an image ``x`` (or a run's own latent ``z``) :func:`prepare_covariance` returns the decoder mean ``G(z)``, the
sparse Cholesky factor ``L(z)`` of the precision ``Sigma^{-1} = L L^T`` and the exact variance map
``diag(Sigma)`` (:meth:`~genreg_viewer.models.cholesky.SparseCholesky.variance_map`, block recursion over the
banded factor), and builds the factor's triangular solver once, so that every later correlation row
``Sigma e_i / sqrt(Sigma_ii diag(Sigma))`` costs one forward and one back substitution (about a millisecond).
The reconstruction worker calls it as soon as an inspectable run ends (:func:`prepare_for_run`), so the first
click on that run in the inspector is as fast as the later ones.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .runs import RunRecord

MODEL_KIND = "covar"

#: arrays of a run that make it worth inspecting: the inspector follows new runs that report one of them
INSPECTABLE_ARRAYS = ("std_map", "latent")


def load_covariance_model(weight_set=None):
    """The structured-covariance VAE of ``weight_set`` (the caller's: the app's and the plugin's choice for the image;
    default: the bundled default set) on the CPU, shared with the reconstructions (one cached instance per weights file
    version, see :mod:`genreg_viewer.models.cache`; eval mode, frozen). ``WeightsError`` (a
    ``ValueError``) when it is missing."""
    from ..recon.generative.common import bundled_model

    return bundled_model(MODEL_KIND, torch.device("cpu"), weight_set)


def is_inspectable(record: RunRecord) -> bool:
    """A finished (not cancelled) run that reports a posterior std map or a latent."""
    return not record.cancelled and any(name in record.arrays for name in INSPECTABLE_ARRAYS)


def covariance_latent(record: RunRecord) -> np.ndarray | None:
    """The run's ``extras['latent']`` where it is a latent of the covariance model, else None (encode the image).

    mean+covar optimises z of the covar VAE, and latent-vi does with ``generator=vae, kind=covar``; the latents of
    other runs belong to other models (the identity VAE, the flow) and mean nothing to this decoder.
    """
    latent = record.arrays.get("latent")
    params = record.params
    own = record.method == f"mean+{MODEL_KIND}" or (
        record.method == "latent-vi" and params.get("generator") == "vae" and params.get("kind") == MODEL_KIND)
    return latent if own else None


def prepare_covariance(model, image: np.ndarray | None, latent: np.ndarray | None) -> dict[str, Any]:
    """Latent code, mean ``G(z)`` (a ``(1, 1, H, W)`` tensor), Cholesky factor ``L(z)`` and variance map (float32
    ``(H, W)``) of ``image`` (``z = mu(x)``, the encoder mean) or of the given ``latent``; the factor's solver is
    built (one covariance row at the centre), so rows are cheap from here on."""
    with torch.no_grad():
        if latent is None:
            x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
            z, _ = model.encode(x)
        else:
            z = torch.as_tensor(np.asarray(latent, dtype=np.float32)).reshape(1, -1)
        mean = model.decode_mean(z)
        cholesky = model.decode_cholesky(z).detach()
    variance = np.asarray(cholesky.variance_map(), np.float32)
    height, width = variance.shape
    cholesky.covariance_row(height // 2, width // 2)  # builds the triangular solver once
    return {"cholesky": cholesky, "mean": mean, "variance": variance}


def prepare_for_run(record: RunRecord, weight_set=None) -> dict[str, Any] | None:
    """:func:`prepare_covariance` for an inspectable run (its own latent, else its image) with the covariance
    model of ``weight_set``; None for runs with nothing to inspect or when that model is missing."""
    if not is_inspectable(record):
        return None
    try:
        model = load_covariance_model(weight_set)
    except (ValueError, OSError):
        return None
    latent = covariance_latent(record)
    return prepare_covariance(model, None if latent is not None else record.image, latent)


def residual_samples(prepared: dict[str, Any], count: int, seed: int) -> list[np.ndarray]:
    """``count`` draws ``G(z) + L^{-T} u``, ``u ~ N(0, I)`` from a generator seeded with ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    draws = prepared["cholesky"].sample(prepared["mean"], generator, count)  # (count, 1, 1, H, W)
    return [draws[i].reshape(draws.shape[-2:]).numpy().astype(np.float32) for i in range(count)]
