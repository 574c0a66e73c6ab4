"""What a session or results bundle's metadata holds, and the checks that turn it into a state.

The metadata (see :mod:`.bundles` for how it is stored) has ``format``, ``version``, ``kind`` (``session`` or
``results``), ``image_info``, ``mask_spec``, ``sigma``, ``seed``, ``runs`` (per run its id, method, title,
parameters, metrics, setting, info, history and the names of its array extras) and, in a session, ``gui`` (the
panels' settings, :mod:`.panel_settings`). :func:`build_bundle` writes that layout; :func:`check_bundle` checks
every field (types, ranges, shapes, seeds in ``[0, 2**63)``, images of at most :data:`MAX_IMAGE_SIDE` a side) and
returns the :class:`SessionContents` that :meth:`ExperimentState.restore` takes at once; :func:`describe_bundle`
summarises a file for ``genreg info``. A bad field is one :class:`~.bundles.SessionError` naming it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..data import limits
from ..physics.noise import MAX_SIGMA
from .bundles import FORMAT_NAME, FORMAT_VERSION, Bundle, SessionError, check_array_name, read_bundle
from .experiment import IMAGE_SIZE, ImageInfo
from .meta_checker import MAX_STORED_INT, MAX_TEXT, MetaChecker
from .panel_settings import check_gui_settings
from .runs import RunRecord

#: most runs in one bundle
MAX_RUNS = 1000
#: largest side of a session's images: the application's image size (opening a session recomputes the SSIM and
#: the comparison maps on the GUI thread; a 4096 x 4096 ground truth froze it for minutes)
MAX_IMAGE_SIDE = IMAGE_SIZE
#: the smallest side of a session image: the SSIM window (11), which scores every run and the adjoint
MIN_IMAGE_SIDE = 11
#: most posterior samples of one run (``run<id>__samples``, ``(K, H, W)``; optional, absent from files written before
#: the app's Uncertainty tab): a run keeps :data:`~genreg_viewer.application.runs.KEPT_SAMPLES`
MAX_RUN_SAMPLES = 64

_check = MetaChecker()


@dataclass
class SessionContents:
    """A bundle checked completely and converted into what :class:`ExperimentState` needs."""

    image: np.ndarray
    info: ImageInfo
    mask: np.ndarray
    mask_spec: str
    sigma: float
    seed: int
    records: list[RunRecord]
    gui: dict[str, Any]


def _image_array(array: np.ndarray, where: str) -> np.ndarray:
    if array.ndim != 2:
        raise SessionError(f"{where} must be a 2-D image, got shape {array.shape}")
    return np.asarray(array, dtype=np.float32)


def _check_image_info(value: Any) -> ImageInfo:
    info = _check.mapping(value, "image_info", default={})
    return ImageInfo(
        source=_check.text(info.get("source", ""), "image_info.source"),
        slice_index=_check.integer(info.get("slice_index"), "image_info.slice_index", 0, MAX_STORED_INT, optional=True),
        num_slices=_check.integer(info.get("num_slices", 1), "image_info.num_slices", 1, MAX_STORED_INT),
        path=_check.text(info.get("path"), "image_info.path", optional=True),
        key=_check.text(info.get("key"), "image_info.key", optional=True),
    )


def _check_setting(value: Any, where: str) -> dict:
    setting = _check.scalars(value, where)
    for key in ("fraction", "sigma"):  # shown with number formats
        if key in setting:
            _check.number(setting[key], f"{where}.{key}", finite=False)
    return setting


def _check_run(index: int, run: Any, arrays: dict[str, np.ndarray], shape: tuple[int, int]) -> RunRecord:
    where = f"runs[{index}]"
    run = _check.mapping(run, where)
    run_id = _check.integer(run.get("run_id"), f"{where}.run_id", 0, MAX_STORED_INT - 1)
    prefix = f"run{run_id}__"
    if f"{prefix}image" not in arrays:
        raise SessionError(f"the session lacks the image of run {run_id}")
    image = _image_array(arrays[f"{prefix}image"], f"the image of run {run_id}")
    if image.shape != shape:
        raise SessionError(f"the image of run {run_id} has shape {image.shape}, the ground truth {shape}")
    if not np.isfinite(image).all():
        raise SessionError(f"the image of run {run_id} contains NaN or infinite values")
    extras = run.get("extras", [])
    if not isinstance(extras, list):
        _check.fail(f"{where}.extras", "a list of names", extras)
    run_arrays = {}
    for name in extras:
        name = check_array_name(name)
        if prefix + name not in arrays:
            raise SessionError(f"the session lacks the array {name!r} of run {run_id}")
        array = arrays[prefix + name]
        if name == "std_map" and array.shape != shape:
            raise SessionError(f"the std_map of run {run_id} has shape {array.shape}, the ground truth {shape}")
        if name == "samples" and (array.ndim != 3 or array.shape[1:] != shape
                                  or not 1 <= array.shape[0] <= MAX_RUN_SAMPLES):
            raise SessionError(f"the posterior samples of run {run_id} have shape {array.shape}; expected (K, "
                               f"{shape[0]}, {shape[1]}) with 1 <= K <= {MAX_RUN_SAMPLES}")
        if array.dtype.kind in "fc" and not np.isfinite(array).all():
            raise SessionError(f"the {name} of run {run_id} contains NaN or infinite values")
        if name == "latent" and array.ndim != 1:
            raise SessionError(f"the latent of run {run_id} must be a vector, got shape {array.shape}")
        run_arrays[name] = array.astype(np.float32) if array.dtype.kind == "f" else array
    psnr = _check.number(run.get("psnr"), f"{where}.psnr", optional=True, finite=False)
    ssim = _check.number(run.get("ssim"), f"{where}.ssim", optional=True, finite=False)
    if (psnr is None) != (ssim is None):
        raise SessionError(f"{where}: psnr and ssim must both be numbers or both null")
    params = _check.mapping(run.get("params", {}), f"{where}.params")
    history = run.get("history", [])
    if not isinstance(history, list):
        _check.fail(f"{where}.history", "a list", history)
    return RunRecord(
        run_id=run_id,
        method=_check.text(run.get("method"), f"{where}.method"),
        title=_check.text(run.get("title"), f"{where}.title"),
        image=image,
        params=_check.plain(params, f"{where}.params"),
        iterations=_check.integer(run.get("iterations", 0), f"{where}.iterations", 0, limits.MAX_SEED - 1),
        seconds=_check.number(run.get("seconds", 0.0), f"{where}.seconds", 0.0),
        device=_check.text(run.get("device", ""), f"{where}.device"),
        psnr=psnr,
        ssim=ssim,
        cancelled=_check.boolean(run.get("cancelled", False), f"{where}.cancelled"),
        setting=_check_setting(run.get("setting", {}), f"{where}.setting"),
        arrays=run_arrays,
        info=_check.scalars(run.get("info", {}), f"{where}.info"),
        history=[_check.mapping(_check.plain(item, f"{where}.history[{i}]"), f"{where}.history[{i}]")
                 for i, item in enumerate(history)],
    )


def check_bundle(bundle: Bundle) -> SessionContents:
    """Check every field and array of ``bundle`` (types, ranges, shapes, names) and return what a state needs;
    the first problem is a :class:`SessionError` (one line)."""
    meta, arrays = bundle.meta, bundle.arrays
    version = meta.get("version", FORMAT_VERSION)
    if isinstance(version, bool) or not isinstance(version, int) or version > FORMAT_VERSION:
        raise SessionError(f"format version {_check.shown(version)} is not supported (this program reads "
                           f"version {FORMAT_VERSION})")
    kind = meta.get("kind", "session")
    if kind not in ("session", "results"):
        _check.fail("kind", "'session' or 'results'", kind)
    for name in arrays:
        check_array_name(name)
    if "ground_truth" not in arrays and "mask" in arrays and kind == "results":
        raise SessionError("these results hold no ground truth image (a reconstruction from measured k-space): the "
                           "app simulates its measurements from an image, so it cannot open them; read the arrays "
                           "with genreg_viewer.application.bundles.read_bundle")
    if "ground_truth" not in arrays or "mask" not in arrays:
        raise SessionError("the session has no ground truth image or mask")
    image = _image_array(arrays["ground_truth"], "the ground truth")
    if not MIN_IMAGE_SIDE <= min(image.shape) or max(image.shape) > MAX_IMAGE_SIDE:
        raise SessionError(f"the ground truth has shape {image.shape}; sessions hold images with sides from "
                           f"{MIN_IMAGE_SIDE} (the SSIM window) to {MAX_IMAGE_SIDE} (the application's image size)")
    if not np.isfinite(image).all():
        raise SessionError("the ground truth contains NaN or infinite values")
    mask = arrays["mask"]
    if mask.shape != image.shape:
        raise SessionError(f"the mask has shape {mask.shape}, the ground truth {image.shape}")
    if mask.dtype != bool and not np.isfinite(mask).all():
        raise SessionError("the mask contains NaN or infinite values")
    runs = meta.get("runs", [])
    if not isinstance(runs, list):
        _check.fail("runs", "a list", runs)
    if len(runs) > MAX_RUNS:
        raise SessionError(f"the session has {len(runs)} runs, more than {MAX_RUNS}")
    records = [_check_run(i, run, arrays, image.shape) for i, run in enumerate(runs)]
    ids = [r.run_id for r in records]
    if len(set(ids)) != len(ids):
        raise SessionError("two runs have the same run_id")
    sigma = _check.number(meta.get("sigma", 0.0), "sigma", 0.0, MAX_SIGMA)
    try:
        seed = limits.check_seed(meta.get("seed", 0), "seed")
    except ValueError as exc:
        raise SessionError(str(exc)) from None
    return SessionContents(
        image=image,
        info=_check_image_info(meta.get("image_info", {})),
        mask=mask.astype(bool) if mask.dtype != bool else mask,
        mask_spec=_check.text(meta.get("mask_spec", "custom"), "mask_spec"),
        sigma=sigma,
        seed=seed,
        records=records,
        gui=check_gui_settings(meta.get("gui", {})),
    )


# ----------------------------------------------------------------------------------- genreg info
def describe_bundle(path: str | Path) -> dict[str, Any]:
    """What a session or results bundle holds, for ``genreg info``: its kind, image source, mask, noise and seed,
    and per run the method, title, metrics, iterations, seconds and array extras (:class:`SessionError` when it
    is not a readable bundle). The metadata is checked as when opening it; arrays are listed by name and shape."""
    path = Path(path)
    bundle = read_bundle(path)
    try:
        return _describe(path, bundle)
    except SessionError as exc:
        raise SessionError(f"{path.name}: {exc}") from None


def _describe(path: Path, bundle: Bundle) -> dict[str, Any]:
    """:func:`describe_bundle` of a read bundle; every field it shows is type-checked (one line naming it)."""
    meta = bundle.meta
    runs = meta.get("runs", [])
    if not isinstance(runs, list):
        _check.fail("runs", "a list", runs)
    if len(runs) > MAX_RUNS:
        raise SessionError(f"the bundle has {len(runs)} runs, more than {MAX_RUNS}")
    kind = meta.get("kind", "session")
    if kind not in ("session", "results"):
        _check.fail("kind", "'session' or 'results'", kind)
    info = _check.mapping(meta.get("image_info"), "image_info", default={})
    described = []
    for i, run in enumerate(runs):
        where = f"runs[{i}]"
        run = _check.mapping(run, where)
        extras = run.get("extras", [])
        if not isinstance(extras, list) or not all(isinstance(e, str) and len(e) <= MAX_TEXT for e in extras):
            _check.fail(f"{where}.extras", "a list of names", extras)
        psnr = _check.number(run.get("psnr"), f"{where}.psnr", optional=True, finite=False)
        ssim = _check.number(run.get("ssim"), f"{where}.ssim", optional=True, finite=False)
        if (psnr is None) != (ssim is None):
            raise SessionError(f"{where}: psnr and ssim must both be numbers or both null")
        described.append({
            "run_id": _check.integer(run.get("run_id"), f"{where}.run_id", 0, MAX_STORED_INT - 1),
            "method": _check.text(run.get("method"), f"{where}.method"),
            "title": _check.text(run.get("title"), f"{where}.title"),
            "psnr": psnr, "ssim": ssim,
            "iterations": _check.integer(run.get("iterations", 0), f"{where}.iterations", 0, limits.MAX_SEED - 1),
            "seconds": _check.number(run.get("seconds", 0.0), f"{where}.seconds", 0.0),
            "extras": extras,
        })
    seed = meta.get("seed")
    return {
        "kind": f"genreg-viewer {kind} bundle",
        "summary": f"{path.name}: genreg-viewer {kind} bundle, {len(runs)} run{'s' if len(runs) != 1 else ''}",
        "size_bytes": sum(f.stat().st_size for f in path.iterdir()) if path.is_dir() else path.stat().st_size,
        "image": _check.text(info.get("source"), "image_info.source", optional=True),
        "mask": _check.text(meta.get("mask_spec"), "mask_spec", optional=True),
        "sigma": _check.number(meta.get("sigma"), "sigma", 0.0, MAX_SIGMA, optional=True),
        "seed": None if seed is None else _check.integer(seed, "seed", 0, limits.MAX_SEED - 1),
        "has_ground_truth": "ground_truth" in bundle.arrays,
        "runs": described,
        "arrays": [{"name": name, "shape": list(array.shape), "dtype": str(array.dtype)}
                   for name, array in sorted(bundle.arrays.items())],
    }


# ----------------------------------------------------------------------------------- writing
def _run_meta(record: RunRecord) -> dict[str, Any]:
    return {
        "run_id": record.run_id,
        "method": record.method,
        "title": record.title,
        "params": record.params,
        "iterations": record.iterations,
        "seconds": record.seconds,
        "device": record.device,
        "psnr": record.psnr,
        "ssim": record.ssim,
        "cancelled": record.cancelled,
        "setting": record.setting,
        "info": record.info,
        "history": record.history,
        "extras": sorted(record.arrays),
    }


def build_bundle(kind: str, ground_truth: np.ndarray | None, mask: np.ndarray, mask_spec: str, sigma: float,
                 seed: int | None, image_info: ImageInfo, records: Sequence[RunRecord],
                 adjoint: np.ndarray | None = None, extra_meta: dict[str, Any] | None = None) -> Bundle:
    """A bundle of one experiment: the ground truth (absent for a reconstruction from measured k-space), the
    centred boolean mask and its spec, the noise level and seed, the adjoint and each run's image and array extras
    (``run<id>__<name>``); ``extra_meta`` adds fields (``gui`` for a session, ``summary`` from ``genreg recon``)."""
    arrays: dict[str, np.ndarray] = {"mask": np.asarray(mask, dtype=bool)}
    if ground_truth is not None:
        arrays["ground_truth"] = np.asarray(ground_truth, dtype=np.float32)
    if adjoint is not None:
        arrays["adjoint"] = np.asarray(adjoint, dtype=np.float32)
    for record in records:
        arrays[f"run{record.run_id}__image"] = record.image
        for name, array in record.arrays.items():
            arrays[f"run{record.run_id}__{name}"] = array
    meta: dict[str, Any] = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "kind": kind,
        "image_info": asdict(image_info),
        "mask_spec": mask_spec,
        "sigma": sigma,
        "seed": seed,
        "runs": [_run_meta(r) for r in records],
        **(extra_meta or {}),
    }
    return Bundle(meta, arrays)
