import numpy as np
import pytest
import torch

from genreg_viewer import metrics


def test_psnr_known_value():
    t = torch.zeros(1, 1, 8, 8)
    x = torch.full((1, 1, 8, 8), 0.1)
    assert float(metrics.psnr(x, t)) == pytest.approx(20.0)
    t2 = torch.full((1, 1, 8, 8), 0.5)
    assert float(metrics.psnr_fastmri(t2 + 0.05, t2)) == pytest.approx(10 * np.log10(0.25 / 0.0025))


def test_ssim_matches_skimage(rng):
    skm = pytest.importorskip("skimage.metrics")
    a = rng.random((64, 64))
    b = np.clip(a + 0.1 * rng.standard_normal((64, 64)), 0, 1)
    ref = skm.structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0)
    assert float(metrics.ssim(b, a)) == pytest.approx(ref, abs=1e-6)
    assert float(metrics.ssim(a, a)) == pytest.approx(1.0)


def test_batched_and_nmse(rng):
    a = torch.as_tensor(rng.random((3, 1, 32, 32)))
    out = metrics.psnr(a * 0.9, a)
    assert out.shape == (3,)
    assert float(metrics.nmse(a, a).max()) == 0.0
