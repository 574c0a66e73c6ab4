"""Shared helpers of the benchmark scripts: held-out phantom sets, problems, timing, markdown tables."""

from __future__ import annotations

import itertools
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


def merge_tuned(path: Path, tuned_all: dict, methods, extra: dict | None = None) -> None:
    """Merge ``{(spokes, sigma): {method: params}}`` for ``methods`` into the tuned-defaults table at ``path``
    (radial settings; entries of other settings are kept; ``extra`` keys are stored with each entry)."""
    import json

    from genreg_viewer.fileio import atomic_write_text
    from genreg_viewer.physics import radial_mask

    table: dict[str, list] = json.loads(path.read_text()) if path.exists() else {}
    for (spokes, sigma), tuned in tuned_all.items():
        for method, params in tuned.items():
            if method not in methods:
                continue
            entries = [e for e in table.get(method, []) if (e["spokes"], e["sigma"]) != (spokes, sigma)]
            entries.append({"spokes": spokes, "sampling_fraction": float(radial_mask(spokes).mean()), "sigma": sigma,
                            "params": params, **(extra or {})})
            table[method] = sorted(entries, key=lambda e: (e["sigma"], e["spokes"]))
    if table:
        atomic_write_text(path, json.dumps(table, indent=2) + "\n")
        print(f"wrote {path}")


def interior_grid_search(score, grids: dict[str, tuple[float, ...]], bounds: dict[str, tuple[float, float]]):
    """Maximise ``score(params)`` over the product of the (log-spaced) ``grids``; while the best point lies on an
    edge of an axis, extend that axis by one more point at the same ratio (3 significant digits), inside ``bounds``.

    Returns ``(best, scores, edges)``: the best parameters, every scored point, and the names of the axes whose best
    value is still the first or last of its (grown) axis, i.e. stopped by ``bounds`` (empty when every optimum is
    interior). Single-value axes are fixed, never reported.
    """
    axes = {name: sorted(values) for name, values in grids.items()}
    scores: dict[tuple, float] = {}
    while True:
        for point in itertools.product(*axes.values()):
            if point not in scores:
                scores[point] = score(dict(zip(axes, point)))
        best = max(scores, key=scores.get)
        grew = False
        for i, name in enumerate(axes):
            values, value = axes[name], best[i]
            if len(values) < 2:
                continue
            low, high = bounds[name]
            below, above = values[0] / (values[1] / values[0]), values[-1] * (values[-1] / values[-2])
            if value == values[0] and below >= low:
                values.insert(0, float(f"{below:.3g}"))
                grew = True
            elif value == values[-1] and above <= high:
                values.append(float(f"{above:.3g}"))
                grew = True
        if not grew:
            break
    edges = [name for i, name in enumerate(axes) if len(axes[name]) > 1 and best[i] in (axes[name][0], axes[name][-1])]
    return dict(zip(axes, best)), scores, edges


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


#: joint-solver variants the tuning scripts can try for mean+diagonal and mean+covar (``--variants``):
#: a warm start from the mean+identity solution, and that plus the marginal-likelihood precision penalty
VARIANTS = {
    "eq12": {},
    "warm": {"warm_start": "identity"},
    "warm+marginal": {"warm_start": "identity", "precision_penalty": "marginal"},
    "marginal": {"precision_penalty": "marginal"},
    "expected": {"precision_penalty": "expected"},
}
