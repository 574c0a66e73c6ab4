"""The Qt-free part of the Uncertainty tab (issue 25): runs keep a few posterior samples, sessions store them (and
still open without them), and a run's curves match a plain computation."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from genreg_viewer.application import ExperimentState, RunRecord
from genreg_viewer.application import bundles, sessions
from genreg_viewer.application.runs import KEPT_SAMPLES
from genreg_viewer.application.sources import phantom_image
from genreg_viewer.application.uncertainty import raw_std_map, run_uncertainty
from genreg_viewer.recon import ReconResult
from genreg_viewer.recon.base import RunExtras

SIDE = 32


def result(samples: torch.Tensor) -> ReconResult:
    return ReconResult(method="latent-vi", image=samples.mean(0), params={}, seed=0, device="cpu", seconds=0.1,
                       iterations=1, history=[], extras=RunExtras(samples=samples, std_map=samples.std(0)), psnr=20.0,
                       ssim=0.5)


@pytest.mark.parametrize("count", [3, 12])
def test_a_run_keeps_at_most_kept_samples_as_k_h_w(count):
    samples = torch.rand(count, 1, 1, SIDE, SIDE)
    record = RunRecord.from_result(result(samples), 1, "run", {})
    kept = record.arrays["samples"]
    assert kept.shape == (min(count, KEPT_SAMPLES), SIDE, SIDE) and kept.dtype == np.float32
    np.testing.assert_array_equal(kept, samples[:KEPT_SAMPLES, 0, 0].numpy())
    assert record.arrays["std_map"].shape == (SIDE, SIDE)


def state_with(record: RunRecord) -> ExperimentState:
    state = ExperimentState()
    state.set_image(*phantom_image(0, 128))
    state.add_result(record)
    return state


@pytest.mark.parametrize("suffix", [".npz", ".h5", ""])
def test_sessions_store_the_samples_and_check_their_shape(tmp_path, suffix):
    image = phantom_image(0, 128)[0]
    samples = torch.from_numpy(np.stack([image + 0.01 * i for i in range(5)]))[:, None, None]
    record = RunRecord.from_result(result(samples), 1, "run", {"mask": "radial:25", "sigma": 0.05})
    path = tmp_path / f"session{suffix}"
    sessions.save_session(path, state_with(record), {})
    restored = ExperimentState()
    sessions.load_session(path, restored)
    np.testing.assert_array_equal(restored.results[0].arrays["samples"], record.arrays["samples"])

    bundle = bundles.read_bundle(path)
    for bad, why in ((np.zeros((2, 64, 64), np.float32), "have shape (2, 64, 64)"),
                     (np.zeros((65, 128, 128), np.float32), "1 <= K <= 64"),
                     (np.zeros((128, 128), np.float32), "have shape (128, 128)")):
        broken = bundles.Bundle(dict(bundle.meta), {**bundle.arrays, "run1__samples": bad})
        with pytest.raises(bundles.SessionError, match=re.escape(why)):
            sessions.restore_bundle(broken, ExperimentState())


def test_a_session_without_samples_still_opens(tmp_path):
    image = phantom_image(0, 128)[0]
    record = RunRecord(run_id=1, method="mean+covar", title="old", image=image, params={}, iterations=1, seconds=0.1,
                       device="cpu", psnr=30.0, ssim=0.9, arrays={"std_map": np.full(image.shape, 0.1, np.float32)})
    path = tmp_path / "old.npz"
    sessions.save_session(path, state_with(record), {})
    restored = ExperimentState()
    sessions.load_session(path, restored)
    assert set(restored.results[0].arrays) == {"std_map"}


def test_run_uncertainty_against_numpy():
    rng = np.random.default_rng(1)
    truth = rng.random((SIDE, SIDE)).astype(np.float32)
    estimate = (truth + 0.05 * rng.standard_normal(truth.shape)).astype(np.float32)
    std = (0.03 + 0.04 * rng.random(truth.shape)).astype(np.float32)
    record = RunRecord(run_id=1, method="mean+covar", title="r", image=estimate, params={}, iterations=1,
                       seconds=0.1, device="cpu", psnr=30.0, ssim=0.9,
                       arrays={"std_map": (2 * std).astype(np.float32)}, info={"std_scale": 2.0})
    np.testing.assert_allclose(raw_std_map(record), std, rtol=1e-6)  # saved calibrated: undone
    shown = run_uncertainty(record, truth, scale=1.5)
    np.testing.assert_allclose(shown.std_map, 1.5 * std, rtol=1e-6)
    error = np.abs(truth.astype(np.float64) - estimate)
    np.testing.assert_allclose(shown.error, error, atol=1e-7)
    z = error / (1.5 * std.astype(np.float64))
    np.testing.assert_allclose(shown.curves.coverage, [np.mean(z <= k / 10) for k in range(41)], atol=2 / z.size)
    np.testing.assert_allclose(shown.curves.gaussian, [math.erf(k / 10 / math.sqrt(2)) for k in range(41)])
    mean, n = error.mean(), error.size
    order = np.argsort(-std.ravel())
    expected = [error.ravel()[order][j * n // 100:].mean() / mean for j in range(100)]
    np.testing.assert_allclose(shown.curves.by_std, expected, rtol=1e-6)
    assert shown.curves.correlation == pytest.approx(np.corrcoef(std.ravel(), error.ravel())[0, 1], abs=1e-4)
    # without a ground truth: the map alone
    alone = run_uncertainty(record, None)
    assert alone.curves is None and alone.error is None and alone.samples is None
    np.testing.assert_allclose(alone.std_map, std, rtol=1e-6)
    with pytest.raises(ValueError, match="positive"):
        run_uncertainty(record, truth, scale=0.0)


def test_calibrated_samples_spread_by_the_factor_about_their_mean():
    rng = np.random.default_rng(2)
    samples = (0.5 + 0.1 * rng.standard_normal((5, SIDE, SIDE))).astype(np.float32)
    record = RunRecord(run_id=1, method="mean+covar", title="r", image=samples.mean(0), params={}, iterations=1,
                       seconds=0.1, device="cpu", psnr=None, ssim=None,
                       arrays={"std_map": samples.std(axis=0, ddof=1), "samples": samples})
    raw = run_uncertainty(record, None)
    np.testing.assert_array_equal(raw.samples, samples)  # factor 1: the samples as drawn
    shown = run_uncertainty(record, None, scale=1.7)
    # the flip-book's spread is the calibrated std map: std of the shown samples = 1.7 x the raw std, same mean
    np.testing.assert_allclose(shown.samples.std(axis=0, ddof=1), shown.std_map, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(shown.samples.mean(axis=0), samples.mean(axis=0), atol=1e-5)
