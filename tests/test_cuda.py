"""Every registered method on CUDA against the same run on the CPU (skipped where no CUDA device is present).

The same problem (two bundled sample phantoms, 25 spokes, sigma 0.05, seeded noise drawn on the CPU) runs on both
devices with a short iteration budget. Deterministic methods must agree to float32 rounding amplified by the
iterations (PSNR within 0.3 dB); seeded stochastic ones (posterior sampling, DIP) within 1 dB. Every output must be
finite, in the expected shape, and the run must report the CUDA device.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genreg_viewer.paths import RESOURCES_DIR
from genreg_viewer.physics import radial_mask, simulate_measurement
from genreg_viewer.recon import Problem, run_method
from genreg_viewer.recon.registry import all_methods

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

#: a short budget per method (the iterative ones converge far enough to compare devices)
ITERATIONS = {"dip": 60, "edip": 60, "narnhofer19": 40, "range": 60, "latent-vi": 60, "flow-prior": 60,
              "varnet": None}  # None: the method's own count (a variational network runs its stages)
STOCHASTIC = {"dip", "edip", "latent-vi", "narnhofer19"}


def sample_problem(device: str) -> Problem:
    images = np.stack([np.load(RESOURCES_DIR / "samples" / f"knee_phantom_00{i}.npy") for i in (0, 1)])
    truth = torch.from_numpy(images.astype(np.float32))[:, None]
    measurement = simulate_measurement(truth, radial_mask(25, (128, 128)), 0.05, seed=3)
    return Problem(measurement, truth, seed=3, device=torch.device(device))


@pytest.mark.parametrize("method", [m.name for m in all_methods()])
def test_method_on_cuda_matches_cpu(method):
    iterations = ITERATIONS.get(method, 100)
    on_gpu = run_method(method, sample_problem("cuda"), {}, iterations=iterations)
    on_cpu = run_method(method, sample_problem("cpu"), {}, iterations=iterations)
    assert on_gpu.device.startswith("cuda") and on_gpu.image.shape == (2, 1, 128, 128)
    assert torch.isfinite(on_gpu.image).all()
    for name, value in on_gpu.extras.items():
        if isinstance(value, torch.Tensor):
            assert torch.isfinite(value).all(), name
    tolerance = 1.0 if method in STOCHASTIC else 0.3
    assert on_gpu.psnr == pytest.approx(on_cpu.psnr, abs=tolerance), (method, on_gpu.psnr, on_cpu.psnr)
