"""Image quality metrics, batched over ``(B, 1, H, W)`` (or ``(H, W)``) tensors or arrays.

* PSNR ``= 10 log10(R^2 / MSE)`` with data range ``R = 1`` for images in [0, 1] (the paper's convention), or
  fastMRI style with ``R = max(target)`` (:func:`psnr_fastmri`).
* SSIM (Wang et al. 2004): 11x11 Gaussian window with sigma 1.5, ``K1 = 0.01``, ``K2 = 0.03``, population
  (co)variances, mean over the valid region; identical to ``skimage.metrics.structural_similarity(...,
  gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=R)`` (checked in the tests).
* NMSE ``= ||x - t||^2 / ||t||^2`` (fastMRI).
"""

from __future__ import annotations


import torch
import torch.nn.functional as F


def _as_batch(x) -> torch.Tensor:
    t = torch.as_tensor(x).detach()
    if t.is_complex():
        t = t.abs()
    t = t.to(torch.float64)
    while t.ndim < 4:
        t = t.unsqueeze(0)
    return t


def mse(x, target) -> torch.Tensor:
    """Mean squared error per image, shape ``(B,)``."""
    x, t = _as_batch(x), _as_batch(target).to(_as_batch(x).device)
    return (x - t).square().flatten(1).mean(1)


def psnr(x, target, data_range: float = 1.0) -> torch.Tensor:
    """PSNR in dB per image with a fixed data range (1 for images scaled to [0, 1])."""
    err = mse(x, target)
    return 10 * torch.log10(data_range**2 / err.clamp_min(1e-30))


def psnr_fastmri(x, target) -> torch.Tensor:
    """fastMRI-style PSNR per image: data range = ``max(target)`` of each image."""
    t = _as_batch(target)
    return 10 * torch.log10(t.flatten(1).amax(1).square() / mse(x, t).clamp_min(1e-30))


def nmse(x, target) -> torch.Tensor:
    """Normalised MSE ``||x - t||^2 / ||t||^2`` per image."""
    x, t = _as_batch(x), _as_batch(target)
    return (x - t.to(x.device)).square().flatten(1).sum(1) / t.square().flatten(1).sum(1).clamp_min(1e-30).to(x.device)


def _gaussian_window(size: int = 11, sigma: float = 1.5, dtype=torch.float64, device=None) -> torch.Tensor:
    coords = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim(x, target, data_range: float = 1.0, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """SSIM per image (Gaussian-weighted, Wang et al. 2004)."""
    x, t = _as_batch(x), _as_batch(target)
    t = t.to(x.device)
    if min(x.shape[-2:]) < window:
        raise ValueError(f"SSIM needs images of at least {window}x{window}")
    w = _gaussian_window(window, sigma, x.dtype, x.device)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    stacked = torch.cat([x, t, x * x, t * t, x * t], dim=1).flatten(0, 1).unsqueeze(1)
    # the window is the outer product of a 1-D Gaussian: two 1-D passes (far cheaper than one 11x11 float64 conv)
    g = w.sum(dim=-1, keepdim=True)
    filtered = F.conv2d(F.conv2d(stacked, g), g.transpose(-1, -2)).unflatten(0, (x.shape[0], 5))
    mu_x, mu_t, xx, tt, xt = filtered.unbind(1)
    var_x, var_t, cov = xx - mu_x**2, tt - mu_t**2, xt - mu_x * mu_t
    s_map = ((2 * mu_x * mu_t + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_t**2 + c1) * (var_x + var_t + c2))
    return s_map.flatten(1).mean(1)


__all__ = ["mse", "psnr", "psnr_fastmri", "nmse", "ssim"]
