"""Helpers of ``benchmarks/reproduce.py``: test images, per-image-seeded problems, a cache of batched method runs,
CSV rows and the shared plotting style.

Every (method, mask, sigma) is run ONCE per invocation, as one batch over all images, through the method registry
(:func:`genreg_viewer.recon.run_method`) with the shipped (tuned) defaults; figures that need the same run reuse it.
"""

from __future__ import annotations

import csv
import json
import math
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common import TEST_SEED, per_image_psnr_ssim  # noqa: F401  (sets up sys.path for genreg_viewer)

from genreg_viewer.physics import Measurement, mask_from_spec, simulate_measurement
from genreg_viewer.recon import Problem, get_method, run_method
from genreg_viewer.tuning import JOINT_METHODS
from genreg_viewer.weight_sets import active_weight_set

#: methods whose posterior std map is not needed for a figure (``posterior_samples=0`` saves its 16 extra solves)
JOINT = JOINT_METHODS
#: how many reconstructed images of each run are kept for the example grids
KEPT_EXAMPLES = 4
CSV_COLUMNS = ("figure", "mask", "sampled_percent", "sigma", "method", "image", "image_seed", "psnr", "ssim",
               "seconds_per_image", "batch_images", "iterations", "device", "params")


@dataclass(frozen=True)
class Setting:
    """A sampling pattern (a ``genreg mask`` spec, mask seed 0) and a k-space noise std."""

    mask: str
    sigma: float

    @property
    def spokes(self) -> int | None:
        kind, _, rest = self.mask.partition(":")
        return int(rest) if kind == "radial" else None

    def label(self) -> str:
        return f"{self.mask}, sigma {self.sigma:g}"


def radial(spokes: int, sigma: float) -> Setting:
    return Setting(f"radial:{spokes}", float(sigma))


def sampled_percent(mask_spec: str, shape=(128, 128)) -> float:
    return 100.0 * float(mask_from_spec(mask_spec, shape, 0).mean())


@dataclass
class TestImages:
    """The ground-truth images ``(N, 1, H, W)`` in [0, 1], the seed of each (its noise seed too) and where they
    came from."""

    images: torch.Tensor
    seeds: list[int]
    source: str
    synthetic: bool


def phantom_images(count: int, first_seed: int = TEST_SEED) -> TestImages:
    """Held-out test phantoms (seeds ``first_seed .. first_seed + count - 1``; training uses seeds < 1,000,000)."""
    from genreg_viewer.data.phantom import phantom_batch

    images = torch.from_numpy(phantom_batch(count, first_seed))[:, None]
    return TestImages(images, [first_seed + i for i in range(count)],
                      f"synthetic knee phantoms, seeds {first_seed}..{first_seed + count - 1}", True)


def slice_set_images(path: str, count: int) -> TestImages:
    """``count`` slices evenly spaced through a slice set (``genreg dataset build``); image i gets noise seed i."""
    from genreg_viewer.data.dataset import load_slice_set

    array = load_slice_set(path)
    if count < len(array):
        array = array[np.linspace(0, len(array) - 1, count).round().astype(int)]
    return TestImages(torch.from_numpy(np.ascontiguousarray(array, np.float32))[:, None], list(range(len(array))),
                      f"{len(array)} slices of {path}", False)


def make_problem(test: TestImages, setting: Setting, device: torch.device, count: int | None = None) -> Problem:
    """``y_i = M F x_i + n_i`` with ``n_i`` drawn from image i's own seed, so an image's data do not depend on how
    many images are in the batch (``simulate_measurement(x_i, mask, sigma, seed=seed_i)`` for a single image gives
    the same ``y_i``). The problem seed (range restarts, sampling) is 0, as in the other benchmarks."""
    count = len(test.seeds) if count is None else min(count, len(test.seeds))
    images = test.images[:count]
    mask = mask_from_spec(setting.mask, tuple(images.shape[-2:]), 0)
    parts = [simulate_measurement(images[i : i + 1], mask, setting.sigma, seed=test.seeds[i]) for i in range(count)]
    measurement = Measurement(torch.cat([p.y for p in parts]), parts[0].operator, setting.sigma, None)
    return Problem(measurement, images, seed=0, device=device, weight_set=active_weight_set())


@dataclass
class MethodRun:
    """One batched run of one method on one setting: per-image metrics and the first few reconstructions."""

    method: str
    setting: Setting
    psnr: np.ndarray
    ssim: np.ndarray
    seconds: float
    iterations: int
    params: dict[str, Any]
    examples: np.ndarray  #: ``(k, H, W)`` reconstructions clipped to [0, 1] of the first k images
    device: str
    commit: str = "unknown"  #: the code that ran it (``git describe --always --dirty``)

    @property
    def count(self) -> int:
        return len(self.psnr)

    def mean_and_error(self, metric: str) -> tuple[float, float]:
        """Mean and standard error over the images."""
        values = getattr(self, metric)
        error = float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else 0.0
        return float(values.mean()), error


@dataclass
class RunCache:
    """Runs each (method, setting) once, batched over all images (or ``caps[method]`` of them), on ``device``."""

    test: TestImages
    device: torch.device
    caps: dict[str, int] = field(default_factory=dict)
    runs: dict[tuple[str, Setting], MethodRun] = field(default_factory=dict)
    failures: dict[tuple[str, Setting], str] = field(default_factory=dict)
    attempted: set[tuple[str, Setting]] = field(default_factory=set)  #: keys asked for since the last clear()
    log: Any = print
    store: Path | None = None  #: optional folder keeping every run across invocations (see :meth:`stored_path`)
    weights: str = "phantom"
    commit: str = "unknown"
    stored_only: bool = False  #: redraw from the store: a run missing there is reported, not run

    def available(self, method: str) -> tuple[bool, str]:
        return get_method(method).available()

    def run(self, method: str, setting: Setting) -> MethodRun | None:
        """The cached run, running it first if needed; ``None`` (and a printed, recorded reason) if it failed."""
        key = (method, setting)
        self.attempted.add(key)
        if key in self.runs:
            return self.runs[key]
        if key in self.failures:
            return None
        stored = self.load_stored(method, setting)
        if stored is not None:
            self.runs[key] = stored
            self.log(f"  {setting.label():28s} {method:14s} PSNR {stored.psnr.mean():6.2f}  SSIM "
                     f"{stored.ssim.mean():.3f}  ({stored.count} images, {stored.seconds:6.1f} s, from {self.store})")
            return stored
        if self.stored_only:
            self.failures[key] = f"not in the store {self.store}"
            self.log(f"  SKIPPED {method} at {setting.label()}: {self.failures[key]}")
            return None
        ok, why = self.available(method)
        if not ok:
            self.failures[key] = f"not available: {why}"
            self.log(f"  SKIPPED {method} at {setting.label()}: {self.failures[key]}")
            return None
        problem = make_problem(self.test, setting, self.device, self.caps.get(method))
        params = {"posterior_samples": 0} if method in JOINT else {}
        start = time.perf_counter()
        try:
            result = run_method(method, problem, params)
        except Exception as exc:  # recorded and reported: a figure shows what ran and says what did not
            self.failures[key] = f"{type(exc).__name__}: {exc}"
            self.log(f"  FAILED {method} at {setting.label()}: {self.failures[key]}")
            return None
        seconds = time.perf_counter() - start
        psnr, ssim = per_image_psnr_ssim(result, problem)
        examples = result.image[:KEPT_EXAMPLES, 0].clamp(0, 1).numpy().astype(np.float32)
        run = MethodRun(method, setting, psnr.astype(float), ssim.astype(float), seconds, int(result.iterations),
                        json_safe_params(result.params), examples, str(problem.device), self.commit)
        self.runs[key] = run
        self.save_stored(run)
        self.log(f"  {setting.label():28s} {method:14s} PSNR {psnr.mean():6.2f}  SSIM {ssim.mean():.3f}  "
                 f"({run.count} images, {seconds:6.1f} s)")
        return run


    def stored_path(self, method: str, setting: Setting) -> Path | None:
        """``STORE/method__mask__sigma__images-N-FIRSTSEED__weights.npz`` (the device is not part of the key)."""
        if self.store is None:
            return None
        count = min(self.caps.get(method, len(self.test.seeds)), len(self.test.seeds))
        name = (f"{method}__{setting.mask}__{setting.sigma:g}__images-{count}-{self.test.seeds[0]}__"
                f"{self.weights}{'' if self.test.synthetic else '__real'}")
        return self.store / (name.replace(":", "_").replace("/", "_") + ".npz")

    def save_stored(self, run: MethodRun) -> None:
        path = self.stored_path(run.method, run.setting)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = json.dumps({"seconds": run.seconds, "iterations": run.iterations, "params": run.params,
                           "device": run.device, "commit": run.commit})
        np.savez(path, psnr=run.psnr, ssim=run.ssim, examples=run.examples, meta=np.array(meta))

    def load_stored(self, method: str, setting: Setting) -> MethodRun | None:
        path = self.stored_path(method, setting)
        if path is None or not path.is_file():
            return None
        with np.load(path) as data:
            meta = json.loads(str(data["meta"]))
            return MethodRun(method, setting, data["psnr"], data["ssim"], float(meta["seconds"]),
                             int(meta["iterations"]), meta["params"], data["examples"], meta["device"],
                             meta.get("commit", "unknown"))


def json_safe_params(params: dict[str, Any]) -> dict[str, Any]:
    safe = {}
    for name, value in params.items():
        if isinstance(value, (bool, int, float, str)) or value is None:
            safe[name] = value
        else:
            safe[name] = str(value)
    return safe


def csv_rows(figure: str, runs: list[MethodRun], test: TestImages) -> list[dict[str, Any]]:
    """One row per image of every run (PSNR/SSIM of that image)."""
    rows = []
    percent = {}
    for run in runs:
        if run.setting.mask not in percent:
            percent[run.setting.mask] = sampled_percent(run.setting.mask, tuple(test.images.shape[-2:]))
        for i in range(run.count):
            rows.append({
                "figure": figure, "mask": run.setting.mask, "sampled_percent": f"{percent[run.setting.mask]:.2f}",
                "sigma": f"{run.setting.sigma:g}", "method": run.method, "image": i, "image_seed": test.seeds[i],
                "psnr": f"{run.psnr[i]:.4f}", "ssim": f"{run.ssim[i]:.5f}",
                "seconds_per_image": f"{run.seconds / run.count:.3f}", "batch_images": run.count,
                "iterations": run.iterations, "device": run.device, "params": json.dumps(run.params, sort_keys=True),
            })
    return rows


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def git_commit() -> str:
    try:
        return subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True,
                              cwd=Path(__file__).resolve().parent, timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def update_manifest(path: Path, figure: str, entry: dict[str, Any]) -> None:
    """Record how one figure was made (images, device, commit, seconds) in ``manifest.json`` next to it."""
    manifest = json.loads(path.read_text()) if path.exists() else {}
    manifest[figure] = entry
    path.write_text(json.dumps(dict(sorted(manifest.items(), key=lambda kv: _figure_order(kv[0]))), indent=2) + "\n")


def _figure_order(name: str) -> tuple[int, str]:
    digits = "".join(c for c in name if c.isdigit())
    return (int(digits) if digits else 0, name)


# ---- plotting ------------------------------------------------------------------------------------------------------

#: one colour and marker per method, the same in every figure
STYLE = {
    "adjoint": ("#7f7f7f", "x"), "tv": ("#1f77b4", "s"), "pnp-admm": ("#2ca02c", "^"), "varnet": ("#9467bd", "v"),
    "range": ("#8c564b", "D"), "narnhofer19": ("#e377c2", "P"), "mean+identity": ("#bcbd22", "<"),
    "mean+diagonal": ("#17becf", ">"), "mean+covar": ("#d62728", "o"), "flow-prior": ("#ff7f0e", "*"),
    "edip": ("#393b79", "h"), "dip": ("#637939", "H"), "lsq": ("#aaaaaa", "."), "latent-vi": ("#843c39", "d"),
}


def style(method: str) -> dict[str, Any]:
    colour, marker = STYLE.get(method, ("black", "."))
    return {"color": colour, "marker": marker}


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
