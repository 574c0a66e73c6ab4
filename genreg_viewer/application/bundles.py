"""Saving and restoring sessions, and exporting results and figures.

A *bundle* is JSON metadata plus named arrays, stored in one of three forms:

* ``.npz``: the arrays, plus the metadata as the string array ``__meta__``;
* ``.h5``/``.hdf5``: one dataset per array, the metadata in the root attribute ``genreg_meta``;
* a folder (a path without suffix): ``<name>.npy`` per array and ``session.json``, written last.

Every file is written atomically (:func:`genreg_viewer.fileio.atomic_path`). Arrays: ``ground_truth``, ``mask``
(centred, boolean), ``adjoint``, and for each run ``run<id>__image`` plus its array extras
(``run<id>__std_map``, ``run<id>__samples``: a few posterior samples ``(K, H, W)``, optional, ...). A *session*
bundle also stores the GUI settings so that the whole window can be restored; a *results* bundle
(``kind = "results"``) is the same without them.

Opening is in two steps: :func:`read_bundle` reads only the arrays the metadata lists, after checking each name
(letters, digits, ``_``, ``-``: a folder bundle's files stay inside the folder) and each array's header (numeric,
sizes within :mod:`genreg_viewer.data.limits`); :func:`check_bundle` then checks every field (types, ranges,
shapes, seeds in ``[0, 2**63)``, images of at most :data:`MAX_IMAGE_SIDE` a side) before
:meth:`ExperimentState.restore` replaces the state at once. A bad bundle is one :class:`SessionError` and changes
nothing. Saving into a folder deletes only ``.npy`` files that the folder's previous ``session.json`` listed under
valid names.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence, overload

import numpy as np

from ..data import limits
from ..data.errors import DataError
from ..data.npyfiles import read_npy_header
from ..fileio import atomic_path, atomic_write, atomic_write_text
from ..physics.noise import MAX_SIGMA
from .experiment import IMAGE_SIZE, ExperimentState, ImageInfo
from .runs import RunRecord

FORMAT_NAME = "genreg-viewer"
FORMAT_VERSION = 1
META_KEY = "__meta__"
H5_META_ATTR = "genreg_meta"
FOLDER_META = "session.json"
SESSION_FILTER = "Session (*.npz *.h5 *.hdf5);;NumPy archive (*.npz);;HDF5 (*.h5 *.hdf5);;All files (*)"
RESULTS_FILTER = "NumPy archive (*.npz);;HDF5 (*.h5 *.hdf5)"

#: array names: plain file names (a folder bundle stores ``<name>.npy`` right in the folder), no dots or separators
ARRAY_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,127}")
#: most bytes of the JSON metadata
MAX_META_BYTES = 64 * 2**20
#: most arrays and runs in one bundle
MAX_ARRAYS = 4096
MAX_RUNS = 1000
#: most characters of a text field (titles, mask specs, method names, ...)
MAX_TEXT = 10_000
#: how deep parameters, infos and histories may nest
MAX_JSON_DEPTH = 4
#: largest side of a session's images: the application's image size (opening a session recomputes the SSIM and
#: the comparison maps on the GUI thread; a 4096 x 4096 ground truth froze it for minutes)
MAX_IMAGE_SIDE = IMAGE_SIZE
#: most bytes of all arrays of a bundle: a session of the most runs at the application's image size holds a few
#: hundred MB (a 4 MB .npz or a 290 KB .h5 asked for 3.75 GiB under the general read limit)
MAX_BUNDLE_BYTES = 2**30
#: the smallest side of a session image: the SSIM window (11), which scores every run and the adjoint
MIN_IMAGE_SIDE = 11
#: most posterior samples of one run (``run<id>__samples``, ``(K, H, W)``; optional, absent from files written before
#: the app's Uncertainty tab): a run keeps :data:`~genreg_viewer.application.runs.KEPT_SAMPLES`
MAX_RUN_SAMPLES = 64
#: Qt passes run ids and widget values as 32-bit integers
QT_INT_LIMIT = 2**31 - 1
NPY_MAGIC = b"\x93NUMPY"


class SessionError(ValueError):
    """A session or results bundle that cannot be read or used; the message says what is wrong."""


@dataclass
class Bundle:
    """A session or results file in memory: JSON metadata and named arrays."""

    meta: dict[str, Any]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def check_array_name(name: Any) -> str:
    """``name`` if it is a valid array name (letters, digits, ``_`` and ``-``; no dots, slashes or absolute
    paths, so ``<name>.npy`` stays inside a bundle folder), else :class:`SessionError`."""
    if not isinstance(name, str) or not ARRAY_NAME.fullmatch(name):
        shown = repr(name) if len(repr(name)) <= 60 else repr(name)[:57] + "..."
        raise SessionError(f"invalid array name {shown}: names are letters, digits, '_' and '-' "
                           "(no paths, no dots)")
    return name


def _storage_kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return "npz"
    if suffix in (".h5", ".hdf5"):
        return "h5"
    if suffix == "" or path.is_dir():
        return "folder"
    raise ValueError(f"cannot save to {path.name}: use a .npz or .h5 file, or a folder name without a suffix")


def write_bundle(path: str | Path, bundle: Bundle) -> Path:
    """Write ``bundle`` to ``path`` (format from the suffix, see the module docstring).

    A folder gets ``<name>.npy`` per array and ``session.json`` last. Arrays that the folder's previous
    ``session.json`` listed and this bundle does not have are removed afterwards; only those files (valid names,
    so inside the folder, that are ``.npy`` files) are ever deleted."""
    path = Path(path)
    kind = _storage_kind(path)
    for name in bundle.arrays:
        check_array_name(name)
    meta = dict(bundle.meta, arrays=sorted(bundle.arrays))
    text = json.dumps(meta, default=_json_default, indent=1)
    if kind == "npz":
        with atomic_path(path) as tmp:
            # (numpy's stub reads **arrays as its allow_pickle keyword)
            np.savez_compressed(tmp, **{META_KEY: np.array(text)}, **bundle.arrays)  # type: ignore[arg-type]
    elif kind == "h5":
        import h5py

        with atomic_path(path) as tmp:
            with h5py.File(tmp, "w") as f:
                f.attrs[H5_META_ATTR] = text
                for name, array in bundle.arrays.items():
                    f.create_dataset(name, data=array, compression="gzip" if array.size > 64 else None)
    else:
        path.mkdir(parents=True, exist_ok=True)
        stale = _previous_folder_arrays(path)
        for name, array in bundle.arrays.items():
            atomic_write(path / f"{name}.npy", functools.partial(_save_npy, array=array))
        atomic_write_text(path / FOLDER_META, text)
        for name in sorted(stale - set(bundle.arrays)):
            _remove_stale_array(path / f"{name}.npy")
    return path


def _save_npy(path, array: np.ndarray) -> None:
    np.save(path, array)


def _previous_folder_arrays(folder: Path) -> set[str]:
    """The array names the folder's existing ``session.json`` lists, if it is a genreg-viewer bundle whose every
    name is valid (anything else: nothing is considered stale, so nothing is deleted)."""
    meta_file = folder / FOLDER_META
    try:
        if meta_file.is_symlink() or not meta_file.is_file() or meta_file.stat().st_size > MAX_META_BYTES:
            return set()
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
            return set()
        return set(_listed_names(meta))
    except (ValueError, OSError, RecursionError):
        return set()


def _remove_stale_array(path: Path) -> None:
    """Delete ``path`` (a ``<valid name>.npy`` directly in the bundle folder) if it is a regular ``.npy`` file;
    a symbolic link is removed itself, never what it points to."""
    try:
        if path.is_symlink():
            path.unlink()
            return
        if not path.is_file():
            return
        with open(path, "rb") as f:
            if f.read(len(NPY_MAGIC)) != NPY_MAGIC:
                return
        path.unlink()
    except OSError:
        pass  # a file we cannot remove stays; the new session.json no longer lists it


# -------------------------------------------------------------------------------------------- reading
NOT_A_BUNDLE = "not a genreg-viewer session or results file"


def _parse_meta(text: str | bytes) -> dict[str, Any]:
    if len(text) > MAX_META_BYTES:
        raise SessionError(f"the metadata is larger than {MAX_META_BYTES // 2**20} MiB")
    try:
        meta = json.loads(text)
    except RecursionError:
        raise SessionError("the metadata nests too deeply") from None
    except ValueError as exc:
        raise SessionError(f"the metadata is not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise SessionError(NOT_A_BUNDLE)
    return meta


def _listed_names(meta: dict) -> list[str]:
    """The validated ``arrays`` list of the metadata."""
    names = meta.get("arrays", [])
    if not isinstance(names, list):
        raise SessionError(f"'arrays' must be a list of names, got {type(names).__name__}")
    if len(names) > MAX_ARRAYS:
        raise SessionError(f"the bundle lists {len(names)} arrays, more than {MAX_ARRAYS}")
    names = [check_array_name(name) for name in names]
    if len(set(names)) != len(names):
        raise SessionError("'arrays' lists a name twice")
    return names


def _check_header(name: str, shape: tuple, dtype: np.dtype, total: list[int]) -> None:
    """Refuse an array that is not numeric, has more than 4 dimensions or is too large (``total``: running byte
    count of the bundle)."""
    dtype = np.dtype(dtype)
    if dtype.kind not in "biuf":
        raise SessionError(f"array {name!r} has dtype {dtype}; session arrays are real numbers or booleans")
    if len(shape) > 4:
        raise SessionError(f"array {name!r} has {len(shape)} dimensions, at most 4 are expected")
    if len(shape) >= 2:
        try:
            limits.check_slice(shape[-2:], dtype.itemsize, f"array {name!r}")
        except DataError as exc:
            raise SessionError(str(exc)) from None
    total[0] += limits.count(shape) * dtype.itemsize
    if total[0] > MAX_BUNDLE_BYTES:
        raise SessionError(f"the bundle's arrays take more than {MAX_BUNDLE_BYTES // 2**30} GiB")


def _read_npy(fileobj, name: str, total: list[int]) -> np.ndarray:
    from numpy.lib import format as npy_format

    try:
        header = read_npy_header(fileobj, f"array {name!r}")
    except DataError as exc:
        raise SessionError(str(exc)) from None
    _check_header(name, header.shape, header.dtype, total)
    fileobj.seek(0)
    array = npy_format.read_array(fileobj, allow_pickle=False)
    if array.shape != header.shape:
        raise SessionError(f"array {name!r} is truncated")
    return array


def _folder_array_path(folder: Path, name: str) -> Path:
    """``folder/<name>.npy``, which must be a regular file inside ``folder`` (a symbolic link may only point to
    a file in the same folder)."""
    path = folder / f"{check_array_name(name)}.npy"
    real_folder = Path(os.path.realpath(folder))
    real = Path(os.path.realpath(path))
    if real.parent != real_folder:
        raise SessionError(f"{path.name} is a link to a file outside the session folder")
    if not real.is_file():
        raise SessionError(f"the folder lacks {path.name}")
    return real


def _read_folder(path: Path, total: list[int]) -> Bundle:
    meta_file = path / FOLDER_META
    if not meta_file.exists():
        raise SessionError(f"not a genreg-viewer session folder (no {FOLDER_META})")
    if meta_file.is_symlink() and Path(os.path.realpath(meta_file)).parent != Path(os.path.realpath(path)):
        raise SessionError(f"{FOLDER_META} is a link to a file outside the session folder")
    if not meta_file.is_file():  # a FIFO or device would block the read
        raise SessionError(f"{FOLDER_META} is not a regular file")
    if meta_file.stat().st_size > MAX_META_BYTES:
        raise SessionError(f"{FOLDER_META} is larger than {MAX_META_BYTES // 2**20} MiB")
    meta = _parse_meta(meta_file.read_bytes())
    files = {name: _folder_array_path(path, name) for name in _listed_names(meta)}  # every name before reading
    arrays = {}
    for name, file in files.items():
        with open(file, "rb") as f:
            arrays[name] = _read_npy(f, name, total)
    return Bundle(meta, arrays)


def _read_npz(path: Path, total: list[int]) -> Bundle:
    with zipfile.ZipFile(path) as archive:
        members = set(archive.namelist())
        if f"{META_KEY}.npy" not in members:
            raise SessionError(NOT_A_BUNDLE)
        with archive.open(f"{META_KEY}.npy") as f:
            try:
                header = read_npy_header(f, "the metadata")
            except DataError as exc:
                raise SessionError(str(exc)) from None
            if header.dtype.kind not in "US" or header.shape != () or header.nbytes > MAX_META_BYTES:
                raise SessionError("the metadata is not a JSON text")
            f.seek(0)
            from numpy.lib import format as npy_format

            meta = _parse_meta(str(npy_format.read_array(f, allow_pickle=False)))
        names = _listed_names(meta)
        missing = [name for name in names if f"{name}.npy" not in members]
        if missing:
            raise SessionError(f"the arrays {missing} are missing")
        arrays = {}
        for name in names:
            with archive.open(f"{name}.npy") as f:
                arrays[name] = _read_npy(f, name, total)
    return Bundle(meta, arrays)


def _read_h5(path: Path, total: list[int]) -> Bundle:
    import h5py

    with h5py.File(path, "r") as f:
        if H5_META_ATTR not in f.attrs:
            raise SessionError(NOT_A_BUNDLE)
        attr = f.attrs.get_id(H5_META_ATTR)
        if limits.count(attr.shape or ()) * attr.dtype.itemsize > MAX_META_BYTES:
            raise SessionError(f"the metadata is larger than {MAX_META_BYTES // 2**20} MiB")
        text = f.attrs[H5_META_ATTR]
        if not isinstance(text, (str, bytes)):
            raise SessionError("the metadata is not a JSON text")
        meta = _parse_meta(text)
        names = _listed_names(meta)
        datasets = {}
        for name in names:
            if not isinstance(f.get(name, getlink=True), h5py.HardLink):  # absent, or a link to elsewhere
                raise SessionError(f"the array {name!r} is missing (or a link)")
            dataset = f.get(name)
            if not isinstance(dataset, h5py.Dataset):
                raise SessionError(f"the array {name!r} is missing")
            if dataset.external or dataset.is_virtual:
                raise SessionError(f"array {name!r} stores its data outside the file")
            _check_header(name, tuple(dataset.shape), dataset.dtype, total)
            try:
                limits.check_chunks(dataset.shape, dataset.chunks, f"array {name!r}", whole=True)
            except DataError as exc:
                raise SessionError(str(exc)) from None
            datasets[name] = dataset
        arrays = {name: dataset[()] for name, dataset in datasets.items()}
    return Bundle(meta, arrays)


def read_bundle(path: str | Path) -> Bundle:
    """Read a bundle written by :func:`write_bundle` (:class:`SessionError`, a ``ValueError``, when ``path`` is
    not one). Only the arrays the metadata lists are read, each size-checked from its header first; in a folder
    they must be plain files inside it."""
    path = Path(path)
    if not path.exists():
        raise SessionError(f"no such file or folder: {path}")
    total = [0]
    if not path.is_dir() and not path.is_file():
        raise SessionError(f"{path.name} is not a regular file or a session folder (a FIFO or device?)")
    try:
        if path.is_dir():
            return _read_folder(path, total)
        if path.suffix.lower() == ".npz":
            return _read_npz(path, total)
        if path.suffix.lower() in (".h5", ".hdf5"):
            return _read_h5(path, total)
    except SessionError as exc:
        raise SessionError(f"{path.name}: {exc}") from None
    except Exception as exc:  # corrupt zip/HDF5/npy, unreadable file
        raise SessionError(f"could not read {path.name}: {_first_line(exc)}") from exc
    raise SessionError(f"{path.name} is not a session: use a .npz/.h5 file or a session folder")


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def is_bundle(path: str | Path) -> bool:
    """Whether ``path`` looks like a session or results bundle (cheap check, no arrays are read)."""
    path = Path(path)
    try:
        if path.is_dir():
            return (path / FOLDER_META).exists()
        if not path.is_file():  # nothing, or a FIFO or device that would block
            return False
        if path.suffix.lower() == ".npz":
            with zipfile.ZipFile(path) as archive:
                return f"{META_KEY}.npy" in archive.namelist()
        if path.suffix.lower() in (".h5", ".hdf5"):
            import h5py

            with h5py.File(path, "r") as f:
                return H5_META_ATTR in f.attrs
    except Exception:  # noqa: BLE001 - a probe: any unreadable file is simply not a bundle
        return False
    return False


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
            "run_id": _check.integer(run.get("run_id"), f"{where}.run_id", 0, QT_INT_LIMIT - 1),
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


# ----------------------------------------------------------------- state <-> bundle
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


def make_bundle(state: ExperimentState, kind: str = "session", gui: dict[str, Any] | None = None) -> Bundle:
    """The image, mask, measurement setting and runs of ``state`` (``kind``: ``session`` or ``results``)."""
    if state.image is None:
        raise ValueError("there is nothing to save: open an image first")
    return build_bundle(kind, state.image, state.mask, state.mask_spec, state.sigma, state.seed, state.image_info,
                        state.results, state.adjoint, None if gui is None else {"gui": gui})


# ----------------------------------------------------------------------------------------- validation
class _Checker:
    """Type and range checks of the metadata; each failure is a :class:`SessionError` naming the field."""

    @staticmethod
    def shown(value: Any) -> str:
        text = repr(value)
        return text if len(text) <= 60 else text[:57] + "..."

    def fail(self, where: str, expected: str, value: Any):
        raise SessionError(f"{where} must be {expected}, got {self.shown(value)}")

    def mapping(self, value: Any, where: str, default=None) -> dict:
        if value is None and default is not None:
            return default
        if not isinstance(value, dict):
            self.fail(where, "an object (dict)", value)
        return value

    @overload
    def text(self, value: Any, where: str, optional: Literal[False] = False) -> str: ...
    @overload
    def text(self, value: Any, where: str, optional: bool) -> str | None: ...

    def text(self, value: Any, where: str, optional: bool = False) -> str | None:
        if value is None and optional:
            return None
        if not isinstance(value, str):
            self.fail(where, "a string" + (" or null" if optional else ""), value)
        if len(value) > MAX_TEXT:
            raise SessionError(f"{where} is longer than {MAX_TEXT} characters")
        return value

    @overload
    def integer(self, value: Any, where: str, low: int, high: int, optional: Literal[False] = False) -> int: ...
    @overload
    def integer(self, value: Any, where: str, low: int, high: int, optional: bool) -> int | None: ...

    def integer(self, value: Any, where: str, low: int, high: int, optional: bool = False) -> int | None:
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(where, "an integer" + (" or null" if optional else ""), value)
        if not low <= value <= high:
            raise SessionError(f"{where} must be between {low} and {high}, got {self.shown(value)}")
        return value

    @overload
    def number(self, value: Any, where: str, low: float = ..., high: float = ...,
               optional: Literal[False] = False, finite: bool = ...) -> float: ...
    @overload
    def number(self, value: Any, where: str, low: float = ..., high: float = ...,
               *, optional: bool, finite: bool = ...) -> float | None: ...

    def number(self, value: Any, where: str, low: float = -math.inf, high: float = math.inf,
               optional: bool = False, finite: bool = True) -> float | None:
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(where, "a number" + (" or null" if optional else ""), value)
        try:
            value = float(value)
        except OverflowError:  # an integer of 1e309 or more
            self.fail(where, "a number within the range of a double", value)
        if finite and not math.isfinite(value):
            self.fail(where, "a finite number", value)
        if not low <= value <= high and not math.isnan(value):
            bound = f">= {low:g}" if high == math.inf else f"between {low:g} and {high:g}"
            raise SessionError(f"{where} must be {bound}, got {value:g}")
        return value

    def boolean(self, value: Any, where: str) -> bool:
        if not isinstance(value, bool):
            self.fail(where, "true or false", value)
        return value

    def plain(self, value: Any, where: str, depth: int = MAX_JSON_DEPTH) -> Any:
        """A JSON value (scalars, lists, objects with string keys) nested at most ``depth`` deep."""
        if value is None or isinstance(value, (bool, int, float)):
            return value
        if isinstance(value, str):
            return self.text(value, where)
        if depth <= 0:
            raise SessionError(f"{where} nests too deeply")
        if isinstance(value, list):
            return [self.plain(v, f"{where}[{i}]", depth - 1) for i, v in enumerate(value)]
        if isinstance(value, dict):
            return {self.text(k, f"a key of {where}"): self.plain(v, f"{where}.{k}", depth - 1)
                    for k, v in value.items()}
        self.fail(where, "a JSON value", value)

    @staticmethod
    def other_scalars(value: dict, known: tuple[str, ...]) -> dict:
        """The entries of ``value`` not in ``known`` whose values are short scalars (settings written by a newer
        version pass through when harmless; anything else is dropped)."""
        return {k: v for k, v in value.items() if isinstance(k, str) and k not in known
                and (v is None or isinstance(v, (bool, int, float)) or (isinstance(v, str) and len(v) <= MAX_TEXT))}

    def scalars(self, value: Any, where: str) -> dict:
        """An object whose values are scalars (string, number, boolean or null)."""
        value = self.mapping(value, where, default={})
        for key, item in value.items():
            if item is not None and not isinstance(item, (str, bool, int, float)):
                self.fail(f"{where}.{key}", "a string, number, boolean or null", item)
            if isinstance(item, str):
                self.text(item, f"{where}.{key}")
        return dict(value)


_check = _Checker()


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
        slice_index=_check.integer(info.get("slice_index"), "image_info.slice_index", 0, QT_INT_LIMIT, optional=True),
        num_slices=_check.integer(info.get("num_slices", 1), "image_info.num_slices", 1, QT_INT_LIMIT),
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
    run_id = _check.integer(run.get("run_id"), f"{where}.run_id", 0, QT_INT_LIMIT - 1)
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


def _check_method_settings(value: Any) -> dict:
    """The Method panel's settings: method name, edited parameter values (parsed by the method's declarations
    when the method is known), iterations; other scalar entries (device, weight set) pass through."""
    raw = _check.mapping(value, "gui.method", default={})
    checked = _check.other_scalars(raw, ("method", "iterations", "params", "edited", "device", "weights"))
    name = _check.text(raw.get("method"), "gui.method.method", optional=True)
    checked["method"] = name
    for key in ("device", "weights"):
        if key in raw:
            checked[key] = _check.text(raw[key], f"gui.method.{key}", optional=True)
    if "iterations" in raw:
        checked["iterations"] = _check.integer(raw["iterations"], "gui.method.iterations", 0, QT_INT_LIMIT)
    edited = raw.get("edited", [])
    if not isinstance(edited, list) or not all(isinstance(e, str) for e in edited):
        _check.fail("gui.method.edited", "a list of parameter names", edited)
    params = _check.scalars(raw.get("params", {}), "gui.method.params")
    checked_params = {}
    if name:
        from ..recon import ParameterError, get_method

        try:
            method = get_method(name)
        except (KeyError, ValueError):
            method = None
        for p in method.parameters if method is not None else ():
            if p.name in params and p.name in edited:
                try:
                    parsed = p.parse(params[p.name])
                except ParameterError as exc:
                    raise SessionError(f"gui.method.params: {exc}") from None
                if p.kind is int and abs(parsed) > QT_INT_LIMIT:
                    raise SessionError(f"gui.method.params: {p.name} = {parsed} is out of range")
                checked_params[p.name] = parsed
    checked["edited"] = sorted(checked_params)
    checked["params"] = checked_params
    return checked


def _check_comparison_settings(value: Any) -> dict:
    settings = _check.mapping(value, "gui.comparison", default={})
    checked = _check.other_scalars(settings, ("mode", "window", "difference_range", "inset", "columns", "region"))
    if "mode" in settings:
        checked["mode"] = _check.text(settings["mode"], "gui.comparison.mode")
    if "window" in settings:
        window = settings["window"]
        if not isinstance(window, list) or len(window) != 2:
            _check.fail("gui.comparison.window", "a list [low, high]", window)
        checked["window"] = [_check.number(v, "gui.comparison.window", -1e6, 1e6) for v in window]
    if "difference_range" in settings:
        checked["difference_range"] = _check.number(settings["difference_range"], "gui.comparison.difference_range",
                                                     0.0, 1e6)
    if "inset" in settings:
        checked["inset"] = _check.boolean(settings["inset"], "gui.comparison.inset")
    if "columns" in settings:
        checked["columns"] = _check.integer(settings["columns"], "gui.comparison.columns", 0, 1000)
    if "region" in settings:
        region = settings["region"]
        if not isinstance(region, list) or len(region) != 4:
            _check.fail("gui.comparison.region", "a list [row, col, height, width]", region)
        checked["region"] = [_check.integer(v, "gui.comparison.region", -QT_INT_LIMIT, QT_INT_LIMIT) for v in region]
    return checked


def _check_gui(value: Any) -> dict:
    gui = _check.mapping(value, "gui", default={})
    checked = _check.other_scalars(gui, ("method", "comparison", "tab"))
    if "tab" in gui:
        checked["tab"] = _check.integer(gui["tab"], "gui.tab", 0, 1000)
    checked["method"] = _check_method_settings(gui.get("method", {}))
    checked["comparison"] = _check_comparison_settings(gui.get("comparison", {}))
    return checked


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
        gui=_check_gui(meta.get("gui", {})),
    )


def restore_bundle(bundle: Bundle, state: ExperimentState) -> dict[str, Any]:
    """Load the image, mask, noise and runs of ``bundle`` into ``state``; return its (checked) GUI settings.

    The whole bundle is checked first (:func:`check_bundle`); a bad one raises :class:`SessionError` and leaves
    ``state`` exactly as it was."""
    contents = check_bundle(bundle)
    state.restore(contents.image, contents.info, contents.mask, contents.mask_spec, contents.sigma, contents.seed,
                  contents.records)
    return contents.gui


def save_session(path: str | Path, state: ExperimentState, gui: dict[str, Any] | None = None) -> Path:
    return write_bundle(path, make_bundle(state, "session", gui or {}))


#: file types of a results export (the app's File > Export results, ``genreg recon --out``)
RESULTS_SUFFIXES = (".npz", ".h5", ".hdf5")


def check_results_path(path: str | Path) -> Path:
    """``path`` if it names a results file (``.npz``/``.h5``), else a ``ValueError`` saying so."""
    if Path(path).suffix.lower() not in RESULTS_SUFFIXES:
        raise ValueError(f"cannot export results to {Path(path).name}: use a .npz or .h5 file")
    return Path(path)


def export_results(path: str | Path, state: ExperimentState) -> Path:
    """Write the ground truth, mask, adjoint and every run's image and metrics to ``.npz``/``.h5``."""
    return write_bundle(check_results_path(path), make_bundle(state, "results"))


def load_session(path: str | Path, state: ExperimentState) -> dict[str, Any]:
    """Read, check and apply the session at ``path`` (see :func:`restore_bundle`); returns its GUI settings."""
    bundle = read_bundle(path)
    try:
        return restore_bundle(bundle, state)
    except SessionError as exc:
        raise SessionError(f"{Path(path).name}: {exc}") from None
