"""Bounds on what an input file may make the program allocate, checked from metadata before anything is read.

The loaders (:mod:`genreg_viewer.data.loading`), saved sessions (:mod:`genreg_viewer.application.bundles`) and the
command line use these limits, so a small hostile file (an HDF5 dataset declaring ``(2, 40000, 40000)``, a PNG
header claiming 100000 x 100000 pixels, a ``.npy`` header with a huge shape) is refused in milliseconds with a
message that names the limit, instead of exhausting memory. The values are generous for real MRI: a fastMRI
multi-coil k-space slice is 15 x 640 x 368 complex64 (28 MB); brain volumes are a few hundred MB.
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np

from ..validators import MAX_SEED, check_seed  # noqa: F401 (re-exported: callers check seeds here)
from .errors import DataError

#: most pixels of one 2-D slice (8192 x 8192); every loaded slice is checked against it
MAX_SLICE_PIXELS = 2**26
#: most bytes read from a file for one slice (raw, e.g. all coils of a multi-coil k-space slice)
MAX_SLICE_BYTES = 2**30
#: most bytes read from a file at once (a whole ``.npz`` array, all the slices one call loads, a slice set) or made
#: at once (a set of training phantoms)
MAX_READ_BYTES = 4 * 2**30
#: most bytes the processing of one slice may hold at once, estimated from its size before it is read: a k-space
#: slice is transformed in complex128 with a few copies (:data:`KSPACE_WORK_BYTES` per sample; a 15-coil 2048 x 2048
#: slice passed the raw limit and then exhausted memory), a reconstruction from measured k-space keeps a few dozen
#: complex64 images of its size (:data:`RECON_WORK_BYTES` per pixel; 8192 x 8192 did). fastMRI's 15 x 640 x 368
#: multi-coil slices need about 230 MB
MAX_WORK_BYTES = 2 * 2**30
KSPACE_WORK_BYTES = 64
RECON_WORK_BYTES = 256
#: most HDF5 chunks one read may touch: each costs bookkeeping (a 447-byte file declaring 1 x 1 x 1 chunks of an
#: 8192 x 8192 slice made HDF5 allocate 3.5 GB to read it)
MAX_CHUNKS_PER_READ = 2**16
#: most bytes of small metadata read from a file (an ISMRMRD XML header, one HDF5 attribute)
MAX_METADATA_BYTES = 16 * 2**20
#: most bytes of a results CSV of ``genreg evaluate`` read to resume it (about a million rows; parsed, each row is a
#: dict of strings several times its size on disk)
MAX_RESULTS_CSV_BYTES = 256 * 2**20


def count(shape: Iterable[int]) -> int:
    """The number of elements of ``shape`` (exact, no overflow)."""
    return math.prod(int(n) for n in shape)


def _size(nbytes: int) -> str:
    for unit, scale in (("PiB", 2**50), ("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.3g} {unit}"
    return f"{nbytes} bytes"


def check_slice(shape: tuple[int, ...], itemsize: int, what: str) -> None:
    """Refuse a slice whose last two axes exceed :data:`MAX_SLICE_PIXELS` or whose bytes (all of ``shape``, e.g.
    coils x rows x cols) exceed :data:`MAX_SLICE_BYTES` (``DataError`` naming ``what`` and the limit)."""
    shape = tuple(int(n) for n in shape)
    if any(n < 0 for n in shape):
        raise DataError(f"{what} declares a negative size {shape}")
    pixels = count(shape[-2:])
    if pixels > MAX_SLICE_PIXELS:
        raise DataError(f"{what}: a slice of {' x '.join(map(str, shape[-2:]))} = {pixels} pixels exceeds the limit "
                        f"of {MAX_SLICE_PIXELS} pixels (8192 x 8192)")
    nbytes = count(shape) * int(itemsize)
    if nbytes > MAX_SLICE_BYTES:
        raise DataError(f"{what}: one slice {shape} would take {_size(nbytes)}, more than the limit of "
                        f"{_size(MAX_SLICE_BYTES)}")


def check_work(shape: Iterable[int], bytes_per_element: int, what: str, doing: str) -> None:
    """Refuse a slice of ``shape`` whose processing (``doing``, e.g. "transforming it") would hold more than
    :data:`MAX_WORK_BYTES` at ``bytes_per_element`` (``DataError`` naming ``what`` and the limit)."""
    shape = tuple(int(n) for n in shape)
    nbytes = count(shape) * int(bytes_per_element)
    if nbytes > MAX_WORK_BYTES:
        raise DataError(f"{what}: {doing} a slice of {' x '.join(map(str, shape))} would take about {_size(nbytes)}, "
                        f"more than the limit of {_size(MAX_WORK_BYTES)}")


def check_chunks(shape: Iterable[int], chunks: Iterable[int] | None, what: str, whole: bool = False) -> None:
    """Refuse an HDF5 dataset of ``shape`` stored in ``chunks`` when reading one slice (every axis but the first of
    a 3-D or 4-D dataset; all of a 2-D one) -- or, with ``whole``, all of it -- touches more than
    :data:`MAX_CHUNKS_PER_READ` chunks (``DataError`` naming ``what``)."""
    if chunks is None:
        return
    shape, chunks = tuple(int(n) for n in shape), tuple(max(1, int(c)) for c in chunks)
    axes = range(len(shape)) if whole or len(shape) < 3 else range(1, len(shape))
    touched = math.prod(-(-shape[a] // chunks[a]) for a in axes)
    if touched > MAX_CHUNKS_PER_READ:
        raise DataError(f"{what} is stored in chunks of {chunks}: one read would touch {touched} chunks, more than "
                        f"the limit of {MAX_CHUNKS_PER_READ}")


def check_read(nbytes: int, what: str) -> None:
    """Refuse reading (or making) ``nbytes`` at once when it exceeds :data:`MAX_READ_BYTES`."""
    if nbytes > MAX_READ_BYTES:
        raise DataError(f"{what} would take {_size(nbytes)}, more than the limit of {_size(MAX_READ_BYTES)} "
                        "at once")


def max_side() -> int:
    """The largest side of a square slice within :data:`MAX_SLICE_PIXELS` (8192)."""
    return math.isqrt(MAX_SLICE_PIXELS)


def check_side(side, what: str = "--size") -> int:
    """``side`` (an image side asked for, e.g. a resize target) as an ``int`` at most :func:`max_side`; a
    ``DataError`` naming ``what`` otherwise (checked before any image of that side is allocated)."""
    if isinstance(side, np.integer):
        side = int(side)
    if isinstance(side, bool) or not isinstance(side, int) or side < 1:
        raise DataError(f"{what} must be a positive integer, got {side!r}")
    if side > max_side():
        raise DataError(f"{what} {side} exceeds the limit of {max_side()} pixels a side "
                        f"({MAX_SLICE_PIXELS} pixels a slice)")
    return side


def check_images(count: int, shape: tuple[int, int], what: str, itemsize: int = 4) -> None:
    """Refuse a stack of ``count`` images of ``shape`` (float32 unless ``itemsize``) larger than the limits: each
    image as :func:`check_slice`, all together as :func:`check_read` (``DataError`` naming ``what``)."""
    count = int(count)
    if count < 0:
        raise DataError(f"{what}: a negative number of images ({count})")
    check_slice(shape, itemsize, what)
    check_read(count * math.prod(int(n) for n in shape) * int(itemsize),
               f"{what} ({count} images of {' x '.join(str(int(n)) for n in shape)})")
