"""Shared helpers of the benchmark scripts: held-out phantom sets, problems, timing, markdown tables (the grid search
and the tuned tables it writes are :mod:`genreg_viewer.tuning`)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from genreg_viewer.data.phantom import phantom_batch  # noqa: E402
from genreg_viewer.physics import mask_from_spec, simulate_measurement  # noqa: E402
from genreg_viewer.recon import Problem, run_method  # noqa: E402
from genreg_viewer.weight_sets import active_weight_set  # noqa: E402

#: held-out test phantoms start here (training uses seeds < 1_000_000); validation (tuning) phantoms at 2_000_000
TEST_SEED = 1_000_000
VALIDATION_SEED = 2_000_000


def set_threads() -> None:
    torch.set_num_threads(int(os.environ.get("GENREG_THREADS", "2")))


def phantoms(count: int, seed: int) -> torch.Tensor:
    return torch.from_numpy(phantom_batch(count, seed))[:, None]


def make_problem(images: torch.Tensor, mask_spec: str, sigma: float, seed: int = 0, device: str = "cpu") -> Problem:
    mask = mask_from_spec(mask_spec, tuple(images.shape[-2:]), seed)
    return Problem(simulate_measurement(images, mask, sigma, seed=seed), images, seed=seed, device=torch.device(device),
                   weight_set=active_weight_set())  # the set chosen with use_weight_set (--weights) or GENREG_WEIGHTS


def timed_run(method: str, problem: Problem, params=None, iterations=None):
    start = time.perf_counter()
    result = run_method(method, problem, params, iterations)
    return result, time.perf_counter() - start


def per_image_psnr_ssim(result, problem: Problem) -> tuple[np.ndarray, np.ndarray]:
    from genreg_viewer import metrics

    image = result.image.clamp(0, 1)
    truth = problem.ground_truth.cpu()
    return metrics.psnr(image, truth).numpy(), metrics.ssim(image, truth).numpy()


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)

