"""Dataset-scale evaluation: registry methods, batched over a slice set, one CSV row per image and method.

``genreg evaluate DATA --methods tv,mean+covar --mask radial:25 --noise 0.05 --out results.csv`` is
:func:`run_evaluation`. What it does, and the conventions the rows depend on:

* **Images.** ``DATA`` is a slice set ``.h5`` of ``genreg dataset build`` or ``phantom:N[:SEED]``; ``images=N`` takes
  ``N`` images evenly spaced through it (``round(linspace(0, len - 1, N))``, as ``benchmarks/bench_real.py`` always
  did). A row's ``image`` is the image's index in ``DATA``.
* **Measurements.** ``y_i = M F x_i + n_i`` with the noise of image ``i`` drawn from its own seed
  :func:`image_noise_seed` ``= SEED * 2**32 + i`` (:func:`~genreg_viewer.physics.add_kspace_noise`), so an image's
  data do not depend on which other images are evaluated, on the batch or on the process that runs it. (The older
  benchmark scripts drew the noise of the whole batch from one seed; their numbers differ from these by a noise
  realisation, not systematically.)
* **Batches.** The selected images are cut into consecutive batches of ``batch`` images; each method runs once per
  batch (methods are batched over images). A method's own random draws (posterior samples, restarts) use the problem
  seed :func:`batch_method_seed` of the batch's first image, so stochastic methods give the same rows for the same
  ``batch`` however the work is spread over processes.
* **Processes.** Under ``torchrun --nproc_per_node N`` (environment ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``) rank
  ``r`` takes batches ``r, r + N, r + 2N, ...`` and appends its rows to its own part file ``OUT.part-r``; on a CUDA
  machine ``--device auto`` is ``cuda:LOCAL_RANK``. When every rank is done (a ``torch.distributed`` barrier over
  gloo, which needs no GPU) rank 0 merges the parts into ``OUT``.
* **Files.** Rows are appended to the part file a batch at a time, each batch in one ``write`` followed by
  ``fsync``; a line torn by a crash is dropped when the file is read back. ``OUT`` itself is only ever replaced
  atomically (sorted rows of ``OUT`` and every part file, duplicates dropped, then the parts deleted).
* **Resuming.** Rows already in ``OUT`` or in any part file are not computed again; a row is identified by
  :data:`KEY_COLUMNS` (data, image, method, mask, sigma, seed, weights and the method options), so one CSV can hold
  several settings. The resolved parameters are recorded (``params``) but are not part of the key: when a
  method's defaults changed between runs the summary warns that its rows mix parameter sets.
* **Summary** (:func:`summarise`): per method the mean ± std (ddof 0) of PSNR and SSIM, seconds per image, and
  against a reference method (default ``tv``) the paired PSNR difference, mean ± standard error
  ``std(d, ddof=1) / sqrt(n)`` over the images both have, and how many images the method beats it on.

* **Reconstructions** (``save_reconstructions``, ``--save-reconstructions DIR``): fastMRI-style volumes
  ``DIR/<method>/<volume>.h5`` and the ground truth ``DIR/target/<volume>.h5``, staged batch by batch and written by
  rank 0 after the merge (:mod:`genreg_viewer.evaluation.reconstructions`).

PSNR and SSIM are computed on the reconstruction clipped to [0, 1] against the ground truth (:mod:`genreg_viewer.
metrics`, the conventions of the README). ``seconds`` is a batch's wall-clock time divided by its image count.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch

from ..defaults import DEFAULT_MASK_SPEC, DEFAULT_NOISE_SIGMA, IMAGE_SIZE

#: the CSV columns, in order
CSV_COLUMNS = ("data", "image", "source", "method", "mask", "sigma", "seed", "weights", "options", "psnr", "ssim",
               "seconds", "iterations", "batch", "device", "params")
#: the columns that identify a row (a resumed run skips rows whose key is present)
KEY_COLUMNS = ("data", "image", "method", "mask", "sigma", "seed", "weights", "options")
#: largest evaluation seed: image noise seeds are ``SEED * 2**32 + index`` and must stay below 2**63
MAX_EVALUATION_SEED = 2**31 - 1
#: largest slice-set index covered by :func:`image_noise_seed` without overlap
MAX_IMAGES = 2**31


def image_noise_seed(seed: int, index: int) -> int:
    """The seed of the k-space noise of image ``index`` of the data: ``seed * 2**32 + index``."""
    return int(seed) * 2**32 + int(index)


def batch_method_seed(seed: int, first_index: int) -> int:
    """The problem seed of a batch whose first image is ``first_index``: ``seed * 2**32 + 2**31 + first_index``
    (apart from every noise seed of :func:`image_noise_seed`)."""
    return int(seed) * 2**32 + 2**31 + int(first_index)


# ------------------------------------------------------------------------------------------------------- settings
@dataclass
class EvaluationConfig:
    """What ``genreg evaluate`` runs (see the module docstring)."""

    data: str
    methods: Sequence[str]
    out: str | os.PathLike
    mask: str = DEFAULT_MASK_SPEC
    sigma: float = DEFAULT_NOISE_SIGMA
    seed: int = 0
    images: int | None = None
    batch: int = 16
    device: str = "auto"
    weights: str | None = None
    #: per method, parameter overrides (``{"mean+covar": {"lam": 0.2}}``)
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: with False, methods with a ``posterior_samples`` parameter get 0 (no std map: it costs time, not quality)
    std_maps: bool = False
    reference: str = "tv"
    #: a folder for fastMRI-style reconstruction volumes (:mod:`genreg_viewer.evaluation.reconstructions`), or None
    save_reconstructions: str | os.PathLike | None = None


@dataclass(frozen=True)
class Shard:
    """Which part of the work this process does: rank ``rank`` of ``world`` (``LOCAL_RANK`` picks its GPU)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0


def shard_from_environment(environ: Mapping[str, str] | None = None) -> Shard:
    """The shard ``torchrun`` describes in ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (one process when unset)."""
    environ = os.environ if environ is None else environ
    try:
        world = int(environ.get("WORLD_SIZE", "1"))
        rank = int(environ.get("RANK", "0"))
        local_rank = int(environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise ValueError("RANK, WORLD_SIZE and LOCAL_RANK must be whole numbers (as torchrun sets them)") from None
    if world < 1 or not 0 <= rank < world or local_rank < 0:
        raise ValueError(f"bad process group: RANK={rank}, WORLD_SIZE={world}, LOCAL_RANK={local_rank}")
    return Shard(rank, world, local_rank)


def parse_method_list(text: str | Sequence[str]) -> list[str]:
    """``"tv,mean+covar"`` (or a list of such) -> ``["tv", "mean+covar"]``, each a registered, available method."""
    from ..recon import get_method

    parts = [text] if isinstance(text, str) else list(text)
    names = [name.strip() for part in parts for name in part.split(",") if name.strip()]
    if not names:
        raise ValueError("--methods is empty; give e.g. --methods tv,mean+covar ('genreg methods' lists them)")
    seen: list[str] = []
    for name in names:
        try:
            method = get_method(name)
        except KeyError as exc:
            raise ValueError(exc.args[0]) from None
        ok, why = method.available()
        if not ok:
            raise ValueError(f"method {name!r} is not available: {why}")
        if name not in seen:
            seen.append(name)
    return seen


def parse_method_params(pairs: Iterable[str], methods: Sequence[str]) -> dict[str, dict[str, str]]:
    """``--param`` values: ``METHOD:NAME=VALUE`` for one method, ``NAME=VALUE`` for every listed method that
    declares ``NAME`` (an error when none does)."""
    from ..recon import ParameterError, get_method

    params: dict[str, dict[str, str]] = {name: {} for name in methods}
    for pair in pairs:
        target, sep, assignment = pair.rpartition(":") if "=" in pair.rpartition(":")[2] else ("", "", pair)
        name, eq, value = assignment.partition("=")
        name, value = name.strip(), value.strip()
        if not eq or not name or not value:
            raise ParameterError(f"--param expects [METHOD:]NAME=VALUE, got {pair!r}")
        if target:
            if target not in params:
                raise ParameterError(f"--param {pair!r}: method {target!r} is not in --methods {list(methods)}")
            targets = [target]
        else:
            targets = [m for m in methods if any(p.name == name for p in get_method(m).parameters)]
            if not targets:
                raise ParameterError(f"--param {pair!r}: none of {list(methods)} has a parameter {name!r}")
        for method in targets:
            params[method][name] = value
    return params


def method_options(method, config: EvaluationConfig) -> dict[str, Any]:
    """The parameters this run sets for ``method`` (checked and parsed): the user's, plus ``posterior_samples = 0``
    when std maps are off. Recorded in the ``options`` column (part of a row's key)."""
    options = dict(config.params.get(method.name, {}))
    if not config.std_maps and "posterior_samples" not in options \
            and any(p.name == "posterior_samples" for p in method.parameters):
        options["posterior_samples"] = 0
    parsed = method.resolve_params(options)
    return {name: parsed[name] for name in sorted(options)}


# --------------------------------------------------------------------------------------------------------- images
@dataclass
class EvaluationImages:
    """The selected images ``(N, 1, H, W)`` with their indices in the data and a description of each source."""

    images: torch.Tensor
    indices: np.ndarray
    sources: list[str]
    data_name: str


def select_indices(total: int, count: int | None) -> np.ndarray:
    """``count`` indices evenly spaced through ``range(total)`` (all when ``count`` is None or >= total)."""
    if count is not None and count < 1:
        raise ValueError(f"--images must be at least 1, got {count}")
    if count is None or count >= total:
        return np.arange(total)
    return np.unique(np.linspace(0, total - 1, count).round().astype(int))


def data_name(spec: str) -> str:
    """How the ``data`` column names the data: the file name of a slice set, the spec of phantoms."""
    return spec if spec.startswith("phantom:") else Path(spec).name


def load_evaluation_images(spec: str, count: int | None = None) -> EvaluationImages:
    """The images of ``spec`` (slice set ``.h5`` or ``phantom:N[:SEED]``), ``count`` of them evenly spaced."""
    from ..data import limits
    from ..data.dataset import load_slice_set, slice_set_size
    from ..data.specs import parse_phantom_spec

    size = IMAGE_SIZE
    phantom = parse_phantom_spec(spec)
    total = phantom[0] if phantom is not None else slice_set_size(spec)
    if total > MAX_IMAGES:
        raise ValueError(f"{spec}: {total} images; at most {MAX_IMAGES} can be evaluated")
    # bounded before the indices are listed (np.linspace of 2**31 of them took 16 GB)
    limits.check_images(total if count is None else min(total, max(int(count), 0)), (size, size), str(spec))
    indices = select_indices(total, count)  # only these are made or read (phantom:15000 --images 1 makes one)
    if phantom is not None:
        from ..data.phantom import knee_phantom

        limits.check_images(len(indices), (size, size), str(spec))
        array = np.empty((len(indices), size, size), np.float32)
        for j, i in enumerate(indices):
            array[j] = knee_phantom(phantom[1] + int(i), size)
        sources = [f"phantom seed {phantom[1] + int(i)}" for i in indices]
    else:
        from ..data.dataset import load_slice_set_sources
        from ..data.errors import DataError

        array = load_slice_set(spec, indices.tolist())
        if tuple(array.shape[1:]) != (size, size):
            raise ValueError(f"{spec}: expected a non-empty stack of {size}x{size} images, got shape "
                             f"{tuple(array.shape)}")
        try:
            all_sources = load_slice_set_sources(spec)
            sources = [f"{all_sources[i][0]}:{all_sources[i][1]}" for i in indices]
        except DataError:
            sources = ["" for _ in indices]
    if not len(indices):
        raise ValueError(f"{spec}: expected a non-empty stack of {size}x{size} images, got none")
    return EvaluationImages(torch.from_numpy(array).unsqueeze(1), indices, sources, data_name(spec))


def simulate_images(images: torch.Tensor, indices: Sequence[int], mask: np.ndarray, sigma: float, seed: int):
    """The :class:`~genreg_viewer.physics.Measurement` of a batch, image ``indices[j]``'s noise drawn from
    :func:`image_noise_seed` (on the CPU, as everywhere)."""
    from ..physics import Measurement, MRIOperator, add_kspace_noise

    operator = MRIOperator(mask)
    kspace = operator.fft(images.to(torch.float32))
    y = torch.cat([add_kspace_noise(kspace[j:j + 1], operator.sampling, sigma, image_noise_seed(seed, index))
                   for j, index in enumerate(indices)])
    return Measurement(y=y, operator=operator, sigma=float(sigma), seed=int(seed))


def make_batch_problem(images: torch.Tensor, indices: Sequence[int], mask: np.ndarray, sigma: float, seed: int,
                       device: torch.device | str = "cpu", weight_set=None):
    """The :class:`~genreg_viewer.recon.Problem` of one batch (ground truth, per-image noise, batch seed; the
    networks and tuned defaults of ``weight_set``, default the bundled default set)."""
    from ..recon import Problem

    measurement = simulate_images(images, indices, mask, sigma, seed)
    return Problem(measurement, images, seed=batch_method_seed(seed, int(indices[0])), device=torch.device(device),
                   weight_set=weight_set)


def batches(count: int, batch: int) -> list[range]:
    """Consecutive positions ``0 .. count-1`` in batches of ``batch``."""
    if batch < 1:
        raise ValueError(f"--batch must be at least 1, got {batch}")
    return [range(start, min(start + batch, count)) for start in range(0, count, batch)]


# ------------------------------------------------------------------------------------------------------------ CSV
def row_key(row: dict[str, Any]) -> tuple:
    return tuple(str(row[column]) for column in KEY_COLUMNS)


def image_key(selection: EvaluationImages, index: int, method: str, config: EvaluationConfig, weights_name: str,
              options: dict[str, Any]) -> tuple:
    """The :func:`row_key` of image ``index``'s row of ``method`` in this run's setting."""
    return (selection.data_name, str(int(index)), method, config.mask, repr(float(config.sigma)), str(config.seed),
            weights_name, json.dumps(options, sort_keys=True))


def part_path(out: Path, rank: int) -> Path:
    return out.with_name(f"{out.name}.part-{rank}")


def part_files(out: Path) -> list[Path]:
    """Every part file of ``out`` (of any earlier or current run, any world size)."""
    return sorted(p for p in out.parent.glob(f"{out.name}.part-*") if p.name[len(out.name) + 6:].isdigit())


def read_rows(path: Path) -> list[dict[str, str]]:
    """The complete rows of a results CSV (or part file); a torn or malformed line, or one whose PSNR, SSIM or
    seconds are not finite numbers (never written now), is dropped and so computed again. A device, FIFO or
    socket at ``path`` is refused (reading it may never end), and so is a file larger than
    :data:`~genreg_viewer.data.limits.MAX_RESULTS_CSV_BYTES`."""
    from ..data.limits import MAX_RESULTS_CSV_BYTES
    from ..fileio import check_not_special

    check_not_special(path, "results CSV")
    if not path.exists():
        return []
    size = path.stat().st_size
    if size > MAX_RESULTS_CSV_BYTES:
        raise ValueError(f"{path} holds {size / 2**20:.0f} MiB, more than the {MAX_RESULTS_CSV_BYTES // 2**20} MiB a "
                         "results CSV may have to be resumed; give another --out")
    text = path.read_text(encoding="utf-8")
    if not text.endswith("\n"):  # every write ends a line: anything after the last newline was torn by a crash
        text = text[:text.rfind("\n") + 1]
    rows: list[dict[str, str]] = []
    header: list[str] | None = None
    for fields in csv.reader(io.StringIO(text)):
        if header is None:
            header = fields
            if tuple(header) != CSV_COLUMNS:
                raise ValueError(f"{path} is not a results CSV of 'genreg evaluate' (its columns are {header[:6]}...; "
                                 f"expected {list(CSV_COLUMNS[:6])}...); give another --out")
            continue
        if len(fields) != len(CSV_COLUMNS):
            continue  # malformed
        row = dict(zip(CSV_COLUMNS, fields))
        try:
            scores = float(row["psnr"]), float(row["ssim"]), float(row["seconds"])
            int(row["image"])
        except ValueError:
            continue
        if not all(math.isfinite(value) for value in scores):  # a diverged run of an older version: computed again
            continue
        rows.append(row)
    return rows


def format_rows(rows: Iterable[dict[str, Any]], header: bool) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if header:
        writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow([row[column] for column in CSV_COLUMNS])
    return buffer.getvalue()


def append_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """Append complete rows (and the header to a new file) in one ``write``, then ``fsync``. A file that ends in
    a torn line is first rewritten (atomically) without it. A missing folder is created (``--out`` may name one)."""
    from ..fileio import check_not_special

    check_not_special(path, "results file")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.stat().st_size:
        with open(path, "rb") as handle:
            handle.seek(-1, os.SEEK_END)
            torn = handle.read(1) != b"\n"
        if torn:
            from ..fileio import atomic_write_text

            atomic_write_text(path, format_rows(read_rows(path), header=True))
    new = not path.exists() or path.stat().st_size == 0
    payload = format_rows(rows, header=new).encode("utf-8")
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        os.write(descriptor, payload)
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def sort_key(row: dict[str, str]) -> tuple:
    return (row["data"], row["weights"], row["mask"], float(row["sigma"]), int(row["seed"]), row["options"],
            int(row["image"]), row["method"])


def merge_results(out: Path) -> list[dict[str, str]]:
    """Replace ``out`` atomically by the sorted union of its rows and those of its part files (first copy of a key
    wins), then delete the part files. Returns the rows."""
    from ..fileio import atomic_write_text

    merged: dict[tuple, dict[str, str]] = {}
    parts = part_files(out)
    for path in [out, *parts]:
        for row in read_rows(path):
            merged.setdefault(row_key(row), row)
    rows = sorted(merged.values(), key=sort_key)
    atomic_write_text(out, format_rows(rows, header=True))
    for path in parts:
        path.unlink(missing_ok=True)
    return rows


def done_keys(out: Path) -> set[tuple]:
    keys = {row_key(row) for row in read_rows(out)}
    for path in part_files(out):
        keys.update(row_key(row) for row in read_rows(path))
    return keys


# ------------------------------------------------------------------------------------------------------- running
def _device_for(name: str, shard: Shard) -> torch.device:
    from ..device import resolve_device

    device = resolve_device(name)
    if device.type == "cuda" and device.index is None and shard.world > 1:
        device = torch.device("cuda", shard.local_rank % torch.cuda.device_count())
    return device


class _ProcessGroup:
    """A gloo process group used only for a barrier (no tensors travel), when there is more than one rank."""

    def __init__(self, shard: Shard):
        self.shard = shard
        self.created = False
        if shard.world == 1:
            return
        import datetime

        import torch.distributed as dist

        if not dist.is_available():
            raise RuntimeError("this torch has no torch.distributed; run one process (without torchrun)")
        if not dist.is_initialized():
            dist.init_process_group("gloo", rank=shard.rank, world_size=shard.world,
                                    timeout=datetime.timedelta(days=7))
            self.created = True

    def barrier(self) -> None:
        if self.shard.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        if self.created:
            import torch.distributed as dist

            dist.destroy_process_group()


def _format_float(value: float, digits: int) -> str:
    return "nan" if not math.isfinite(value) else f"{value:.{digits}f}"


def evaluate_batch(method, problem, positions: Sequence[int], selection: EvaluationImages, config: EvaluationConfig,
                   options: dict[str, Any], weights_name: str, store=None) -> list[dict[str, Any]]:
    """Run ``method`` on one batch problem and return its rows; with a :class:`~genreg_viewer.evaluation.
    reconstructions.ReconstructionStore`, its clipped images are staged there first."""
    from .. import metrics
    from ..recon import check_finite_result, run_method

    start = time.perf_counter()
    result = run_method(method, problem, options)
    seconds = time.perf_counter() - start
    if result.cancelled:
        raise RuntimeError(f"{method.name} was cancelled")
    check_finite_result(result)  # a diverged run is an error, never a row of nan scores
    image = result.image.clamp(0, 1)
    truth = problem.ground_truth.detach().cpu()
    if store is not None:
        store.stage(method.name, [int(selection.indices[p]) for p in positions],
                    image.detach().cpu().reshape(len(positions), *image.shape[-2:]).numpy())
    psnr = metrics.psnr(image, truth).numpy()
    ssim = metrics.ssim(image, truth).numpy()
    params = json.dumps(result.params, sort_keys=True, default=str)
    rows = []
    for j, position in enumerate(positions):
        rows.append({
            "data": selection.data_name, "image": int(selection.indices[position]),
            "source": selection.sources[position], "method": method.name, "mask": config.mask,
            "sigma": repr(float(config.sigma)), "seed": int(config.seed), "weights": weights_name,
            "options": json.dumps(options, sort_keys=True), "psnr": _format_float(float(psnr[j]), 6),
            "ssim": _format_float(float(ssim[j]), 6), "seconds": _format_float(seconds / len(positions), 4),
            "iterations": result.iterations, "batch": len(positions), "device": str(problem.device),
            "params": params,
        })
    return rows


@dataclass
class EvaluationRun:
    """What a finished run reports: this setting's rows (after the merge; empty on ranks other than 0) and its
    summary."""

    rows: list[dict[str, str]]
    summary: dict[str, Any] | None
    computed: int  #: rows computed by this process
    skipped: int  #: rows this process found already done
    #: the volume files ``--save-reconstructions`` wrote (rank 0)
    reconstructions: list[Path] = field(default_factory=list)


def run_evaluation(config: EvaluationConfig, shard: Shard | None = None, progress: bool = True,
                   log: Callable[[str], None] | None = None) -> EvaluationRun:
    """Evaluate ``config.methods`` on the selected images, append rows, merge on rank 0 and summarise."""
    from ..data.limits import check_seed
    from ..physics import check_sigma, mask_from_spec
    from ..recon import get_method
    from ..weight_sets import auto_weight_set_for, resolve_weight_set

    shard = shard or shard_from_environment()
    log = log or (lambda text: print(text, file=sys.stderr, flush=True))  # noqa: T201 - the caller's progress lines
    config.sigma = check_sigma(config.sigma, "--noise")
    config.seed = check_seed(config.seed, "--seed")
    if config.seed > MAX_EVALUATION_SEED:
        raise ValueError(f"--seed must be at most {MAX_EVALUATION_SEED} for an evaluation, got {config.seed}")
    if config.batch < 1:
        raise ValueError(f"--batch must be at least 1, got {config.batch}")
    if config.images is not None and config.images < 1:
        raise ValueError(f"--images must be at least 1, got {config.images}")
    methods = [get_method(name) for name in parse_method_list(config.methods)]
    # the given set (the command line passes --weights or GENREG_WEIGHTS), or the set trained for the data's kind
    # (auto: phantom:N -> phantom, a slice set of scans -> real-knee)
    weight_set = resolve_weight_set(config.weights) if config.weights else auto_weight_set_for(config.data)
    options = {method.name: method_options(method, config) for method in methods}
    out = Path(config.out)
    from ..fileio import check_writable

    check_writable(out, "--out")
    read_rows(out)  # refuses a file that is not a results CSV before any work
    store = None
    if config.save_reconstructions is not None:
        from .reconstructions import ReconstructionStore

        store = ReconstructionStore(
            config.save_reconstructions,
            {"data": data_name(config.data), "mask": config.mask, "sigma": repr(float(config.sigma)),
             "seed": config.seed, "weights": weight_set.name},
            {name: json.dumps(value, sort_keys=True) for name, value in options.items()}, shard.rank)
        store.check()  # a folder that cannot be written or holds another setting: refused before any work
    selection = load_evaluation_images(config.data, config.images)
    mask = mask_from_spec(config.mask, tuple(selection.images.shape[-2:]), config.seed)
    volumes = None
    if store is not None:
        from .reconstructions import group_volumes

        volumes = group_volumes(config.data, selection.indices.tolist())
    device = _device_for(config.device, shard)
    if config.reference and config.reference not in [m.name for m in methods] and shard.rank == 0:
        log(f"note: the reference method {config.reference!r} is not among the methods; no paired differences")
    group = _ProcessGroup(shard)
    try:
        done = done_keys(out)
        own_batches = [b for j, b in enumerate(batches(len(selection.indices), config.batch)) if j % shard.world
                       == shard.rank]
        work: list[tuple[range, Any, list[int]]] = []
        skipped = 0
        for positions in own_batches:
            for method in methods:
                missing = []
                for position in positions:
                    key = image_key(selection, int(selection.indices[position]), method.name, config,
                                    weight_set.name, options[method.name])
                    if key in done:
                        skipped += 1
                    else:
                        missing.append(position)
                if missing:
                    work.append((positions, method, missing))
        if store is not None and volumes is not None:
            _check_saved(store, volumes, selection, methods, done, config, weight_set.name, options)
        total = sum(len(missing) for _, _, missing in work)
        prefix = f"rank {shard.rank}/{shard.world}: " if shard.world > 1 else ""
        log(f"{prefix}{len(selection.indices)} images of {config.data}, {len(methods)} method(s), {config.mask}, "
            f"sigma {config.sigma}, seed {config.seed}, weights {weight_set.name}, device {device}: "
            f"{total} row(s) to compute, {skipped} already done")
        computed = 0
        own_part = part_path(out, shard.rank)
        bar = None
        if progress and total:
            from tqdm import tqdm

            bar = tqdm(total=total, unit="img", desc=f"{prefix}evaluate", file=sys.stderr, dynamic_ncols=True)
        try:
            for _positions, method, missing in work:
                index = torch.as_tensor(missing)
                problem = make_batch_problem(selection.images[index], selection.indices[missing].tolist(), mask,
                                             config.sigma, config.seed, device, weight_set)
                rows = evaluate_batch(method, problem, missing, selection, config, options[method.name],
                                      weight_set.name, store)
                append_rows(own_part, rows)
                computed += len(rows)
                if bar is not None:
                    bar.update(len(rows))
                    bar.set_postfix(method=method.name, psnr=f"{np.mean([float(r['psnr']) for r in rows]):.2f}",
                                    refresh=False)
        finally:
            if bar is not None:
                bar.close()
        group.barrier()
        if shard.rank != 0:
            return EvaluationRun([], None, computed, skipped)
        merged = merge_results(out)
        written: list[Path] = []
        if store is not None and volumes is not None:
            from .reconstructions import acceleration_of, acquisition_of

            written = store.finish([m.name for m in methods], volumes, selection.indices.tolist(),
                                   selection.images[:, 0].numpy(), acquisition_of(config.data),
                                   acceleration_of(mask))
    finally:
        group.close()
    names = {m.name: json.dumps(options[m.name], sort_keys=True) for m in methods}
    selected = {str(int(i)) for i in selection.indices}
    rows = [r for r in merged if r["data"] == selection.data_name and r["mask"] == config.mask
            and r["sigma"] == repr(float(config.sigma)) and r["seed"] == str(config.seed)
            and r["weights"] == weight_set.name and names.get(r["method"]) == r["options"] and r["image"] in selected]
    summary = summarise(rows, [m.name for m in methods], config.reference)
    for name, entry in summary["methods"].items():
        if entry["params_variants"] > 1:
            log(f"warning: the rows of {name} were computed with {entry['params_variants']} different parameter sets "
                "(the method's defaults changed between runs); evaluate into a fresh --out to compare like with like")
    summary.update({"data": config.data, "mask": config.mask, "sigma": config.sigma, "seed": config.seed,
                    "weights": weight_set.name, "out": str(out)})
    if store is not None:
        summary["reconstructions"] = str(store.folder)
    return EvaluationRun(rows, summary, computed, skipped, written)


def _check_saved(store, volumes, selection: EvaluationImages, methods, done: set[tuple], config: EvaluationConfig,
                 weights_name: str, options: dict[str, Any]) -> None:
    """Refuse (one line) rows of this setting already in the CSV whose reconstructions ``store`` does not have:
    their volumes could not be written without computing the rows again."""
    shape = tuple(selection.images.shape[-2:])
    for method in methods:
        done_images = {int(i) for i in selection.indices
                       if image_key(selection, int(i), method.name, config, weights_name, options[method.name]) in done}
        if not done_images:
            continue
        unsaved = store.unsaved_done_rows(method.name, volumes, selection.indices.tolist(), done_images, shape)
        if unsaved:
            raise ValueError(f"--out {config.out} already holds {len(unsaved)} row(s) of {method.name} for this "
                             f"setting whose reconstructions are not in --save-reconstructions "
                             f"{config.save_reconstructions}; evaluate into a fresh --out to save them")


# ------------------------------------------------------------------------------------------------------- summary
def summarise(rows: Sequence[dict[str, str]], methods: Sequence[str], reference: str | None = "tv") -> dict[str, Any]:
    """Per method: images, PSNR/SSIM mean and std (ddof 0), seconds per image; against ``reference`` (on the images
    both have) the mean paired PSNR difference, its standard error ``std(d, ddof=1)/sqrt(n)`` and the wins."""
    by_method: dict[str, dict[int, dict[str, str]]] = {name: {} for name in methods}
    for row in rows:
        if row["method"] in by_method:
            by_method[row["method"]][int(row["image"])] = row
    reference_rows = by_method.get(reference or "", {})
    result: dict[str, Any] = {"reference": reference if reference_rows else None, "methods": {}}
    for name in methods:
        entries = by_method[name]
        if not entries:
            continue
        psnr = np.array([float(r["psnr"]) for r in entries.values()])
        ssim = np.array([float(r["ssim"]) for r in entries.values()])
        seconds = np.array([float(r["seconds"]) for r in entries.values()])
        entry: dict[str, Any] = {
            "images": len(entries), "psnr_mean": float(psnr.mean()), "psnr_std": float(psnr.std()),
            "ssim_mean": float(ssim.mean()), "ssim_std": float(ssim.std()),
            "seconds_per_image": float(seconds.mean()),
            #: distinct resolved parameter sets among the rows (more than one: rows from runs with other defaults)
            "params_variants": len({r.get("params", "") for r in entries.values()}),
        }
        if reference_rows and name != reference:
            common = sorted(set(entries) & set(reference_rows))
            if common:
                diff = np.array([float(entries[i]["psnr"]) - float(reference_rows[i]["psnr"]) for i in common])
                se = float(diff.std(ddof=1) / math.sqrt(len(diff))) if len(diff) > 1 else float("nan")
                entry.update({"paired_images": len(common), "diff_vs_reference": float(diff.mean()),
                              "diff_se": se, "wins_vs_reference": int((diff > 0).sum())})
        result["methods"][name] = entry
    return result


def summary_table(summary: dict[str, Any], setting: str | None = None) -> str:
    """The summary as a markdown table (the README's benchmark layout)."""
    reference = summary.get("reference")
    header = ["method", "images", "PSNR (dB)", "SSIM"]
    if reference:
        header += [f"PSNR - {reference} (± s.e.)", f"beats {reference}"]
    header.append("s/image")
    if setting:
        header.insert(0, "setting")
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for name, entry in summary["methods"].items():
        cells = [name, str(entry["images"]), f"{entry['psnr_mean']:.2f} ± {entry['psnr_std']:.2f}",
                 f"{entry['ssim_mean']:.3f} ± {entry['ssim_std']:.3f}"]
        if reference:
            if "diff_vs_reference" in entry:
                cells += [f"{entry['diff_vs_reference']:+.2f} ± {entry['diff_se']:.2f}",
                          f"{entry['wins_vs_reference']}/{entry['paired_images']}"]
            else:
                cells += ["", ""]
        cells.append(f"{entry['seconds_per_image']:.2f}")
        if setting:
            cells.insert(0, setting)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
