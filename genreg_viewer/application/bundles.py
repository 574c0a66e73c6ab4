"""How session and results bundles are stored: reading and writing, with the checks on the container.

A *bundle* is JSON metadata plus named arrays, stored in one of three forms:

* ``.npz``: the arrays, plus the metadata as the string array ``__meta__``;
* ``.h5``/``.hdf5``: one dataset per array, the metadata in the root attribute ``genreg_meta``;
* a folder (a path without suffix): ``<name>.npy`` per array and ``session.json``, written last.

Every file is written atomically (:func:`genreg_viewer.fileio.atomic_path`). Arrays: ``ground_truth``, ``mask``
(centred, boolean), ``adjoint``, and for each run ``run<id>__image`` plus its array extras
(``run<id>__std_map``, ``run<id>__samples``: a few posterior samples ``(K, H, W)``, optional, ...). What the
metadata holds and how it is checked is :mod:`.session_schema`; saving and opening an experiment is
:mod:`.sessions`.

Opening is in two steps: :func:`read_bundle` reads only the arrays the metadata lists, after checking each name
(letters, digits, ``_``, ``-``: a folder bundle's files stay inside the folder) and each array's header (numeric,
sizes within :mod:`genreg_viewer.data.limits`); :func:`~.session_schema.check_bundle` then checks every field. A
bad bundle is one :class:`SessionError`. Saving into a folder deletes only ``.npy`` files that the folder's
previous ``session.json`` listed under valid names.
"""

from __future__ import annotations

import functools
import json
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data import limits
from ..data.errors import DataError
from ..data.npyfiles import read_npy_header
from ..fileio import atomic_path, atomic_write, atomic_write_text

FORMAT_NAME = "genreg-viewer"
FORMAT_VERSION = 1
META_KEY = "__meta__"
H5_META_ATTR = "genreg_meta"
FOLDER_META = "session.json"

#: array names: plain file names (a folder bundle stores ``<name>.npy`` right in the folder), no dots or separators
ARRAY_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,127}")
#: most bytes of the JSON metadata
MAX_META_BYTES = 64 * 2**20
#: most arrays in one bundle
MAX_ARRAYS = 4096
#: most bytes of all arrays of a bundle: a session of the most runs at the application's image size holds a few
#: hundred MB (a 4 MB .npz or a 290 KB .h5 asked for 3.75 GiB under the general read limit)
MAX_BUNDLE_BYTES = 2**30
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
