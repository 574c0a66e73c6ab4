"""Measured k-space from ``.npy`` / ``.npz`` files (``genreg recon --kspace``): a complex ``(H, W)`` array, or a
``(slices, H, W)`` stack, centred (DC at ``(H // 2, W // 2)``) and zero where unsampled. The header is checked against
:mod:`genreg_viewer.data.limits` before anything is read; a ``.npy`` file is memory-mapped so only the slice used is
read."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import limits
from .errors import DataError
from .npyfiles import NpyHeader, read_npy_file_header, read_npz_array, read_npz_headers


def _check_kspace_header(header: NpyHeader, path: Path, what: str) -> None:
    """Refuse a k-space array from its header: not complex, not 2-D/3-D, or a slice beyond the size limits."""
    if header.dtype.kind != "c":
        raise DataError(f"{path}: k-space must be a complex array, got dtype {header.dtype}")
    if len(header.shape) not in (2, 3):
        raise DataError(f"{path}: k-space must be a complex (H, W) or (slices, H, W) array, got shape {header.shape}")
    limits.check_slice(header.shape[-2:], header.dtype.itemsize, what)
    limits.check_work(header.shape[-2:], limits.RECON_WORK_BYTES, what, "reconstructing")


def _read_kspace_array(path: Path) -> np.ndarray:
    """The k-space array of ``path``, its header checked before anything is read: a ``.npy`` file is memory-mapped
    (only the slice used is read), a ``.npz`` member (``kspace`` or the first complex 2-D/3-D array) is read
    whole within :data:`~genreg_viewer.data.limits.MAX_READ_BYTES`."""
    import zipfile

    suffix = path.suffix.lower()
    if suffix not in (".npy", ".npz"):
        raise DataError(f"{path}: k-space must be a .npy or .npz file")
    try:
        if suffix == ".npy":
            _check_kspace_header(read_npy_file_header(path), path, f"the k-space in {path}")
            return np.load(path, mmap_mode="r", allow_pickle=False)
        with zipfile.ZipFile(path) as archive:
            headers = read_npz_headers(archive, path)
            name = "kspace" if "kspace" in headers else next(
                (n for n, (_, h) in headers.items() if h.dtype.kind == "c" and len(h.shape) in (2, 3)), None)
            if name is None:
                raise DataError(f"{path}: no complex 2-D or 3-D array in {sorted(headers)} (or one named 'kspace')")
            member, header = headers[name]
            what = f"k-space array {name!r} in {path}"
            _check_kspace_header(header, path, what)
            return read_npz_array(archive, member, header, what)
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - corrupt or truncated file, not a zip archive
        raise DataError(f"{path}: cannot read k-space ({exc})") from None


def load_kspace(path: str | Path, slice_index: int | None = None) -> np.ndarray:
    """A complex ``(H, W)`` k-space array (centred) from ``.npy``/``.npz``; a 3-D array is a stack of slices."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"k-space file not found: {path}")
    array = _read_kspace_array(path)
    if array.ndim == 3:
        index = array.shape[0] // 2 if slice_index is None else slice_index
        if not 0 <= index < array.shape[0]:
            raise DataError(f"{path}: slice {index} out of range (the file has {array.shape[0]} slices)")
        array = array[index]
    elif slice_index not in (None, 0):
        raise DataError(f"{path}: --slice {slice_index} given, but the k-space is a single 2-D slice")
    if min(array.shape) < 2:
        raise DataError(f"{path}: k-space of shape {array.shape} is too small")
    try:
        array = np.array(array, dtype=np.complex64)  # reads the slice of a memory map
    except Exception as exc:  # noqa: BLE001 - the file is shorter than its header says
        raise DataError(f"{path}: cannot read k-space ({exc})") from None
    if not np.isfinite(array).all():
        raise DataError(f"{path}: k-space contains NaN or infinite values")
    return array
