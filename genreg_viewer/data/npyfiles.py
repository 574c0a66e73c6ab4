"""Reading NumPy ``.npy`` / ``.npz`` headers before any data: what an array declares (shape, dtype, order) is
checked against :mod:`genreg_viewer.data.limits` before it is read, and arrays of Python objects (which would need
pickle) are refused. Used by the image loader, the k-space loader, mask files and session bundles.
"""

from __future__ import annotations

import os

from dataclasses import dataclass

import numpy as np

from . import limits
from .errors import DataError


@dataclass
class NpyHeader:
    """What a ``.npy`` header declares (nothing of the data is read)."""

    shape: tuple[int, ...]
    fortran_order: bool
    dtype: np.dtype

    @property
    def nbytes(self) -> int:
        return limits.count(self.shape) * self.dtype.itemsize


def read_npy_header(fileobj, what: str) -> NpyHeader:
    """The header of the ``.npy`` stream ``fileobj`` (positioned at its start; left just after the header).

    ``DataError`` when it is not a ``.npy`` header or declares Python objects (which would need pickle)."""
    from numpy.lib import format as npy_format

    try:
        version = npy_format.read_magic(fileobj)
        if version == (1, 0):
            shape, fortran_order, dtype = npy_format.read_array_header_1_0(fileobj)
        elif version == (2, 0):
            shape, fortran_order, dtype = npy_format.read_array_header_2_0(fileobj)
        else:
            raise ValueError(f"unsupported .npy format version {version[0]}.{version[1]}")
    except (ValueError, OSError, EOFError, SyntaxError) as exc:
        raise DataError(f"could not read {what}: not a valid .npy array ({exc})") from None
    if dtype.hasobject:
        raise DataError(f"{what} holds Python objects; only numeric arrays are read (no pickle)")
    return NpyHeader(tuple(int(n) for n in shape), bool(fortran_order), dtype)


def check_array_header(header: NpyHeader, what: str) -> None:
    """Refuse a 2-D image or 3-D stack whose slices exceed the limits (:func:`limits.check_slice`)."""
    if len(header.shape) in (2, 3):
        limits.check_slice(header.shape[-2:], header.dtype.itemsize, what)


def read_npy_file_header(path: str | os.PathLike) -> NpyHeader:
    """The header of the ``.npy`` file ``path`` (:func:`read_npy_header`; an unreadable file is a ``DataError``)."""
    try:
        with open(path, "rb") as f:
            return read_npy_header(f, f"NumPy file {path}")
    except OSError as exc:
        raise DataError(f"could not read NumPy file {path}: {exc}") from exc


def read_npz_headers(archive, path: str | os.PathLike) -> dict[str, tuple[str, NpyHeader]]:
    """``{array name: (member name, header)}`` of every array of the open ``.npz`` ``zipfile.ZipFile`` ``archive``
    (only the headers are read)."""
    members = {info.filename[:-4]: info.filename for info in archive.infolist() if info.filename.endswith(".npy")}
    headers = {}
    for name, member in members.items():
        with archive.open(member) as f:
            headers[name] = (member, read_npy_header(f, f"array {name!r} in {path}"))
    return headers


def read_npz_array(archive, member: str, header: NpyHeader, what: str) -> np.ndarray:
    """The array ``member`` of ``archive`` after checking its ``header`` against the limits (each 2-D slice and
    the whole array, which a ``.npz`` member cannot be memory-mapped)."""
    from numpy.lib import format as npy_format

    check_array_header(header, what)
    limits.check_read(header.nbytes, what)
    with archive.open(member) as f:
        return npy_format.read_array(f, allow_pickle=False)
