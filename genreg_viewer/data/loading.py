"""Loading 2-D slices from fastMRI ``.h5`` volumes, slice sets, images and NumPy files.

Every supported file is viewed as a stack of 2-D slices (a 2-D image is a stack of one):

* fastMRI HDF5 (``.h5``): ``reconstruction_esc`` (single-coil) or ``reconstruction_rss`` (multi-coil) magnitude
  volumes ``(slices, 320, 320)``; if only ``kspace`` is present (``(slices, rows, cols)`` single-coil or
  ``(slices, coils, rows, cols)`` multi-coil, complex) the slice is reconstructed as fastMRI does
  (:func:`~genreg_viewer.data.preprocess.kspace_to_image`). Root attributes (``acquisition``, ``patient_id``,
  ``max``, ``norm``, ...) go into ``meta``. A slice set written by ``genreg dataset build`` (dataset ``images``)
  loads the same way. Any other HDF5 file needs ``key``: without it the error is an :class:`ImageKeyError` whose
  ``candidates`` are the datasets that could hold images (numeric, 2-D or 3-D), so a caller can offer a choice.
* Images (``.png``, ``.tif``/``.tiff`` incl. multi-page, ``.jpg``/``.jpeg``, ``.bmp``) via Pillow: 16-bit and float
  images keep their values, everything else becomes 8-bit grayscale (Pillow's ITU-R 601-2 luma).
* ``.npy``: ``(H, W)`` image or ``(slices, H, W)`` volume; ``.npz``: the array named ``key`` or the first 2-D/3-D
  array. Complex arrays become their magnitude.

The default slice of a volume is the centre one, ``num_slices // 2``. Loaded slices are preprocessed with
:func:`~genreg_viewer.data.preprocess.preprocess` (square centre crop, anti-aliased resize, [0, 1] scaling).
Any problem is a :class:`DataError` with a message naming the file and what was expected.

Sizes are checked from metadata before anything is read (HDF5 shapes and chunks, ``.npy`` headers, image headers;
the limits are in :mod:`genreg_viewer.data.limits`), only the slice asked for is read, and HDF5 datasets stored in
external files or assembled from other files (virtual datasets) are refused: a file may only supply its own data.
"""

from __future__ import annotations

import contextlib
import os
import warnings
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ..defaults import IMAGE_SIZE
from . import limits
from .errors import DataError
from .npyfiles import (
    NpyHeader,
    check_array_header,
    read_npy_file_header,
    read_npy_header,
    read_npz_array,
    read_npz_headers,
)
from .preprocess import FASTMRI_RECON_SIZE, kspace_to_image, preprocess

__all__ = [
    "DataError", "ImageKeyError", "LoadedImage", "load_image", "load_volume_slices", "describe_file", "file_attributes",
    "centre_slice_indices", "HDF5_SUFFIXES", "IMAGE_SUFFIXES", "SUPPORTED_SUFFIXES", "SLICE_SET_FORMAT",
]

HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
#: the Pillow formats an image file of each suffix may hold (its content decides how it is decoded)
IMAGE_FORMATS = {".png": ("PNG",), ".tif": ("TIFF",), ".tiff": ("TIFF",), ".jpg": ("JPEG", "MPO"),
                 ".jpeg": ("JPEG", "MPO"), ".bmp": ("BMP", "DIB")}
SUPPORTED_SUFFIXES = HDF5_SUFFIXES + IMAGE_SUFFIXES + (".npy", ".npz")

#: value of the ``format`` attribute of slice sets written by :mod:`genreg_viewer.data.dataset`
SLICE_SET_FORMAT = "genreg-slice-set"

#: HDF5 datasets tried in this order when no ``key`` is given (``images``: a slice set)
KNOWN_HDF5_IMAGE_KEYS = ("reconstruction_esc", "reconstruction_rss", "images", "kspace")
KSPACE_KEY = "kspace"
ISMRMRD_HEADER_KEY = "ismrmrd_header"


class ImageKeyError(DataError):
    """An HDF5 file whose image dataset cannot be chosen automatically; load it again with ``key`` set to one of
    ``candidates`` (dataset names, possibly empty)."""

    def __init__(self, message: str, path: str | os.PathLike, candidates: Sequence[str]):
        super().__init__(message)
        self.path = str(path)
        self.candidates = tuple(candidates)


@dataclass
class LoadedImage:
    """One preprocessed slice and where it came from."""

    image: np.ndarray  #: float32 ``(size, size)`` in [0, 1] (``(H, W)`` when loaded with ``size=None``)
    source: str  #: the file's path
    slice_index: int | None  #: index in the volume; ``None`` for a 2-D image
    num_slices: int  #: slices in the file (1 for a 2-D image)
    meta: dict = field(default_factory=dict)  #: format, dataset key, original shape, file attributes, ...


# --------------------------------------------------------------------------------------------------- helpers


def json_safe(value, max_items: int = 16):
    """Convert an HDF5/NumPy attribute value into something ``json.dumps`` accepts (bytes decoded, NumPy scalars
    unwrapped, long arrays summarised, an empty HDF5 value as null)."""
    if type(value).__name__ == "Empty" and type(value).__module__.startswith("h5py"):  # a null dataspace
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.generic):
        return json_safe(value.item(), max_items)
    if isinstance(value, np.ndarray):
        if value.size > max_items:
            return f"<array {value.dtype} {list(value.shape)}>"
        return [json_safe(v, max_items) for v in value.tolist()] if value.ndim else json_safe(value.item(), max_items)
    if isinstance(value, (list, tuple)):
        return [json_safe(v, max_items) for v in value]
    if isinstance(value, complex):
        return str(value)
    return value


def centre_slice_indices(num_slices: int, count: int) -> list[int]:
    """``count`` consecutive slice indices centred on the centre slice ``num_slices // 2``.

    The window starts at ``num_slices // 2 - count // 2`` and is shifted to stay inside the volume; with
    ``count >= num_slices`` every slice is returned. E.g. a 35-slice knee volume and ``count = 8`` gives 13..20
    (the predecessor paper used slices 12-19).
    """
    if count < 1:
        raise DataError(f"the number of slices near the centre must be at least 1, got {count}")
    if count >= num_slices:
        return list(range(num_slices))
    start = min(max(num_slices // 2 - count // 2, 0), num_slices - count)
    return list(range(start, start + count))


def _check_regular(path: Path, what: str) -> None:
    """``DataError`` for a device, FIFO or socket at ``path`` (reading one may never end)."""
    from ..fileio import NotRegularFileError, check_not_special

    try:
        check_not_special(path, what)
    except NotRegularFileError as exc:
        raise DataError(str(exc).replace("; give a file name", "")) from None


def _check_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        if path.is_symlink():
            raise DataError(f"{path} is a link to {os.readlink(path)}, which does not exist")
        raise DataError(f"file not found: {path}")
    if path.is_dir():
        raise DataError(f"{path} is a folder, not a file")
    _check_regular(path, "input")
    if path.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise DataError(
            f"unsupported file type {path.suffix or '(no extension)'!r} for {path}; "
            f"supported: {', '.join(SUPPORTED_SUFFIXES)}"
        )
    return path


def _check_slice_index(slice_index: int | None, num_slices: int, is_volume: bool, path: Path) -> int:
    if slice_index is None:
        return num_slices // 2
    if isinstance(slice_index, bool) or not isinstance(slice_index, (int, np.integer)):
        raise DataError(f"slice index must be an integer, got {slice_index!r}")
    if not 0 <= slice_index < num_slices:
        holds = f"{num_slices} slices (0-{num_slices - 1})" if is_volume else "a single 2-D image (slice 0)"
        raise DataError(f"slice {slice_index} is out of range: {path} holds {holds}")
    return int(slice_index)


def _stack_shape_error(path: Path, what: str, shape: tuple) -> DataError:
    hint = ""
    if len(shape) == 3 and shape[-1] <= 4 < min(shape[:2]):
        hint = " (it looks channel-last, e.g. RGB; save a grayscale image or a (slices, H, W) array)"
    return DataError(f"{what} in {path} has shape {shape}; expected a 2-D image (H, W) or a volume "
                     f"(slices, H, W){hint}")


@dataclass
class _SliceSource:
    """An open file viewed as a stack of 2-D slices; ``read(i)`` returns slice ``i`` raw (any dtype, 2-D)."""

    num_slices: int
    is_volume: bool
    read: Callable[[int], np.ndarray]
    meta: dict


def _array_source(array, path: Path, what: str, meta: dict) -> _SliceSource:
    """A NumPy array (or lazily indexable HDF5 dataset / memory map) of shape (H, W) or (slices, H, W)."""
    shape = tuple(array.shape)
    if len(shape) in (2, 3):
        limits.check_slice(shape[-2:], np.dtype(array.dtype).itemsize, f"{what} in {path}")
    if len(shape) == 2:
        return _SliceSource(1, False, lambda i: np.asarray(array[...]), {**meta, "volume_shape": list(shape)})
    if len(shape) == 3:
        if shape[-1] <= 4 < min(shape[:2]):
            raise _stack_shape_error(path, what, shape)
        return _SliceSource(shape[0], True, lambda i: np.asarray(array[i]), {**meta, "volume_shape": list(shape)})
    raise _stack_shape_error(path, what, shape)


# ------------------------------------------------------------------------------------------------------ HDF5


def _hdf5_datasets(h5file) -> dict:
    """All datasets in the file by full name (``group/name``)."""
    import h5py

    found: dict[str, Any] = {}
    h5file.visititems(lambda name, obj: found.__setitem__(name, obj) if isinstance(obj, h5py.Dataset) else None)
    return found


def check_hdf5_dataset(dataset, name: str, path: Path) -> None:
    """Refuse a dataset whose data lives outside ``path`` (external raw files, virtual datasets) or whose chunks
    would have to be decompressed beyond the limits to read a slice; a dataset without data (a null dataspace)."""
    if dataset.shape is None:
        raise DataError(f"dataset {name!r} in {path} holds no data (an empty HDF5 dataspace)")
    if dataset.external:
        files = ", ".join(str(entry[0]) for entry in dataset.external)
        raise DataError(f"dataset {name!r} in {path} stores its data in external files ({files}); "
                        "only data inside the file itself is read")
    if dataset.is_virtual:
        raise DataError(f"dataset {name!r} in {path} is a virtual dataset mapping other files; "
                        "only data inside the file itself is read")
    if dataset.chunks is not None:
        nbytes = limits.count(dataset.chunks) * dataset.dtype.itemsize
        if nbytes > limits.MAX_SLICE_BYTES:
            raise DataError(f"dataset {name!r} in {path} has chunks of {nbytes} bytes, more than the limit of "
                            f"{limits.MAX_SLICE_BYTES} bytes decompressed at once")
        limits.check_chunks(dataset.shape, dataset.chunks, f"dataset {name!r} in {path}")


def _hdf5_attributes(obj) -> dict:
    """The attributes of an HDF5 object, JSON-safe; one too large to read is summarised from its shape."""
    attributes = {}
    for name in obj.attrs:
        try:
            attr = obj.attrs.get_id(name)
            shape = attr.shape or ()
            nbytes = limits.count(shape) * attr.dtype.itemsize
            if nbytes > limits.MAX_METADATA_BYTES:
                attributes[name] = f"<array {attr.dtype} {list(shape)}>"
            else:
                attributes[name] = json_safe(obj.attrs[name])
        except (OSError, TypeError, ValueError, KeyError) as exc:  # unreadable type, damaged attribute
            attributes[name] = f"<unreadable: {exc}>"
    return attributes


def _describe_datasets(datasets: dict) -> str:
    if not datasets:
        return "no datasets"
    return ", ".join(f"{name} {tuple(d.shape) if d.shape is not None else '(empty)'} {d.dtype}"
                     for name, d in sorted(datasets.items()))


def _recon_size_from_header(h5file) -> tuple[int, int] | None:
    """``encoding/reconSpace/matrixSize`` (x, y) from the ISMRMRD XML header, as fastMRI crops to it."""
    import h5py

    if not isinstance(h5file.get(ISMRMRD_HEADER_KEY, getlink=True), h5py.HardLink):  # absent, or a link elsewhere
        return None
    header = h5file[ISMRMRD_HEADER_KEY]
    if not hasattr(header, "dtype") or header.shape is None:  # a group, or a header without data
        return None
    check_hdf5_dataset(header, ISMRMRD_HEADER_KEY, Path(h5file.filename))
    if limits.count(header.shape or ()) * header.dtype.itemsize > limits.MAX_METADATA_BYTES:
        return None
    try:
        raw = header[()]
        root = ElementTree.fromstring(raw.tobytes() if isinstance(raw, np.ndarray) else raw)
        ns = {"m": root.tag.split("}")[0].strip("{")} if root.tag.startswith("{") else {}
        prefix = "m:" if ns else ""
        size = root.find(f"{prefix}encoding/{prefix}reconSpace/{prefix}matrixSize", ns)
        rows, cols = (int(size.find(f"{prefix}{axis}", ns).text or "") for axis in "xy")  # type: ignore[union-attr]
        return (rows, cols) if rows > 0 and cols > 0 else None
    except Exception:  # noqa: BLE001 - a header we cannot parse falls back to fastMRI's 320 x 320
        return None


def _open_hdf5_file(path: Path):
    import h5py

    if not h5py.is_hdf5(path):
        raise DataError(f"{path} is not an HDF5 file (expected a fastMRI .h5 volume or a slice set)")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise DataError(f"could not open HDF5 file {path}: {exc}") from exc


def _image_key_candidates(datasets: dict) -> list[str]:
    """Names of the datasets that could hold images: numeric (real or complex) with 2 or 3 dimensions, sorted."""
    return sorted(name for name, d in datasets.items()
                  if d.shape is not None and len(d.shape) in (2, 3) and d.dtype.kind in "biufc" and min(d.shape) > 0)


def _hdf5_image_key(h5file, key: str | None, path: Path) -> str:
    datasets = _hdf5_datasets(h5file)
    if key is not None:
        if key not in datasets:
            raise DataError(f"{path} has no dataset {key!r}; it holds: {_describe_datasets(datasets)}")
        return key
    for name in KNOWN_HDF5_IMAGE_KEYS:
        if name in datasets:
            return name
    raise ImageKeyError(
        f"{path} has no image dataset I know ({', '.join(KNOWN_HDF5_IMAGE_KEYS)}); it holds: "
        f"{_describe_datasets(datasets)}. Choose one with key=NAME (--key NAME)",
        path,
        _image_key_candidates(datasets),
    )


def _hdf5_source(h5file, key: str | None, path: Path) -> _SliceSource:
    name = _hdf5_image_key(h5file, key, path)
    dataset = h5file[name]
    check_hdf5_dataset(dataset, name, path)
    shape = tuple(dataset.shape)
    attributes = _hdf5_attributes(h5file)
    meta = {
        "format": "hdf5",
        "key": name,
        "attributes": attributes,
        "has_ismrmrd_header": ISMRMRD_HEADER_KEY in h5file,
    }
    for attr in ("acquisition", "patient_id", "max", "norm"):
        if attr in attributes:
            meta[attr] = attributes[attr]
    if name != KSPACE_KEY:
        return _array_source(dataset, path, f"dataset {name!r}", meta)
    # raw k-space: (rows, cols), (slices, rows, cols) or (slices, coils, rows, cols)
    if len(shape) not in (2, 3, 4):
        raise DataError(f"dataset 'kspace' in {path} has shape {shape}; expected (rows, cols), (slices, rows, cols) "
                        "or (slices, coils, rows, cols)")
    limits.check_slice(shape[1:] if len(shape) > 2 else shape, dataset.dtype.itemsize, f"dataset 'kspace' in {path}")
    limits.check_work(shape[1:] if len(shape) > 2 else shape, limits.KSPACE_WORK_BYTES, f"dataset 'kspace' in {path}",
                      "transforming")
    recon_size = _recon_size_from_header(h5file) or FASTMRI_RECON_SIZE
    meta.update(coils=shape[1] if len(shape) == 4 else 1, recon_size=list(recon_size), volume_shape=list(shape))
    if len(shape) == 2:
        return _SliceSource(1, False, lambda i: kspace_to_image(dataset[...], recon_size), meta)
    return _SliceSource(shape[0], True, lambda i: kspace_to_image(dataset[i], recon_size), meta)


# ----------------------------------------------------------------------------------------------- other files


def _check_image_frame(image, path: Path, index: int) -> None:
    """Refuse a frame whose header declares more than :data:`~genreg_viewer.data.limits.MAX_SLICE_PIXELS` pixels
    (Pillow has read the header only; the pixels are decoded later)."""
    what = f"frame {index} of {path}" if index else f"image {path}"
    limits.check_slice((image.height, image.width), 8, what)


def _pillow_frame(image) -> np.ndarray:
    """The current frame as a 2-D array: 16-bit/32-bit/float modes keep their values, others become 8-bit luma."""
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        return np.asarray(image).astype(np.float64)
    return np.asarray(image.convert("L"))


def _image_source(stack: contextlib.ExitStack, path: Path) -> _SliceSource:
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():  # sizes above our limit are refused just below, with our message
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = stack.enter_context(Image.open(path))  # reads the header only
        expected = IMAGE_FORMATS.get(path.suffix.lower(), ())
        if image.format not in expected:  # a GIF of 1,200 8000 x 8000 frames named .png ran for minutes
            raise DataError(f"image {path} holds {image.format or 'an unknown format'}, not "
                            f"{' or '.join(expected)} as its name says")
        _check_image_frame(image, path, 0)
        image.load()
    except DataError:
        raise
    except Image.DecompressionBombError as exc:  # Pillow's own header check, above its MAX_IMAGE_PIXELS
        raise DataError(f"image {path} is too large: {str(exc).rstrip('.')}; at most {limits.MAX_SLICE_PIXELS} "
                        "pixels (8192 x 8192) are read per slice") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"could not read image file {path}: corrupt or not a {path.suffix[1:].upper()} image "
                        f"({exc})") from exc
    try:  # only TIFF stacks are volumes: counting the frames of other formats means decoding them all
        frames = int(getattr(image, "n_frames", 1)) if image.format == "TIFF" else 1
    except (OSError, EOFError, SyntaxError, ValueError) as exc:
        raise DataError(f"could not read image file {path}: corrupt {path.suffix[1:].upper()} image ({exc})") from exc
    meta = {"format": "image", "mode": image.mode, "width": image.width, "height": image.height, "frames": frames}

    def read(index: int) -> np.ndarray:
        try:
            image.seek(index)
            _check_image_frame(image, path, index)
            return _pillow_frame(image)
        except DataError:
            raise
        except (OSError, EOFError, SyntaxError, ValueError) as exc:
            raise DataError(f"could not read frame {index} of {path}: {exc}") from exc

    return _SliceSource(frames, frames > 1, read, meta)


def _npy_source(path: Path) -> _SliceSource:
    header = read_npy_file_header(path)
    check_array_header(header, f"the array in {path}")
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)  # a memory map: only the slice read is loaded
    except Exception as exc:  # corrupt header, truncated data
        raise DataError(f"could not read NumPy file {path}: {exc}") from exc
    return _array_source(array, path, "the array", {"format": "npy", "dtype": str(array.dtype)})


def _npz_source(path: Path, key: str | None) -> _SliceSource:
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            found = read_npz_headers(archive, path)
            headers = {n: h for n, (_, h) in found.items()}
            listing = ", ".join(f"{n} {h.shape}" for n, h in headers.items()) or "no arrays"
            if key is not None and key not in headers:
                raise DataError(f"{path} has no array {key!r}; it holds: {listing}")
            name = key if key is not None else next((n for n, h in headers.items() if len(h.shape) in (2, 3)), None)
            if name is None:
                raise DataError(f"{path} has no 2-D or 3-D array; it holds: {listing}")
            what = f"array {name!r} in {path}"
            check_array_header(headers[name], what)
            array: Any = _NpzStack(path, found[name][0], headers[name], what)
            if len(headers[name].shape) != 3 or headers[name].fortran_order:
                array = read_npz_array(archive, found[name][0], headers[name], what)
    except DataError:
        raise
    except Exception as exc:  # not a zip archive, truncated or corrupt data
        raise DataError(f"could not read NumPy archive {path}: {exc}") from exc
    contents = [{"name": n, "shape": list(h.shape), "dtype": str(h.dtype)} for n, h in headers.items()]
    meta = {"format": "npz", "key": name, "dtype": str(array.dtype), "arrays": contents}
    return _array_source(array, path, f"array {name!r}", meta)


class _NpzStack:
    """A C-ordered ``(slices, H, W)`` member of a ``.npz`` archive read one slice at a time: the member's stream is
    decompressed up to the slice and only the slice is kept (the whole array was read before, so a 4 MB archive of
    zeros could ask for 3.75 GiB to show one slice)."""

    def __init__(self, path: Path, member: str, header: NpyHeader, what: str):
        self.path, self.member, self.header, self.what = path, member, header, what
        self.shape, self.dtype = header.shape, header.dtype

    def __getitem__(self, index) -> np.ndarray:
        import zipfile

        slice_bytes = limits.count(self.shape[1:]) * self.dtype.itemsize
        try:
            with zipfile.ZipFile(self.path) as archive, archive.open(self.member) as f:
                read_npy_header(f, self.what)  # leaves the stream at the data
                skip = int(index) * slice_bytes
                while skip:
                    chunk = f.read(min(skip, 2**20))
                    if not chunk:
                        break
                    skip -= len(chunk)
                data = f.read(slice_bytes) if not skip else b""
        except DataError:
            raise
        except Exception as exc:  # noqa: BLE001 - a damaged archive
            raise DataError(f"could not read {self.what}: {exc}") from None
        if len(data) != slice_bytes:
            raise DataError(f"{self.what} is truncated: slice {int(index)} is missing")
        return np.frombuffer(data, self.dtype).reshape(self.shape[1:]).copy()


@contextlib.contextmanager
def _open_source(path: str | os.PathLike, key: str | None = None) -> Iterator[tuple[Path, _SliceSource]]:
    path = _check_path(path)
    suffix = path.suffix.lower()
    if key is not None and suffix not in HDF5_SUFFIXES + (".npz",):
        raise DataError(f"key={key!r} only applies to .h5 and .npz files, not {path.name}")
    with contextlib.ExitStack() as stack:
        if suffix in HDF5_SUFFIXES:
            source = _hdf5_source(stack.enter_context(_open_hdf5_file(path)), key, path)
        elif suffix in IMAGE_SUFFIXES:
            source = _image_source(stack, path)
        elif suffix == ".npy":
            source = _npy_source(path)
        else:
            source = _npz_source(path, key)
        if source.num_slices < 1:
            raise DataError(f"{path} holds no slices (volume shape {source.meta.get('volume_shape')})")
        yield path, source


def _load_slice(path: Path, source: _SliceSource, index: int, size: int | None) -> LoadedImage:
    where = f"{path} (slice {index})" if source.is_volume else str(path)
    try:
        raw = source.read(index)
    except DataError:
        raise
    except (OSError, KeyError, ValueError) as exc:  # h5py read errors on damaged files
        raise DataError(f"could not read {where}: {exc}") from exc
    try:
        image = preprocess(raw, size)
    except DataError as exc:
        raise DataError(f"{where}: {exc}") from None
    meta = {**source.meta, "original_shape": list(raw.shape)}
    return LoadedImage(image, str(path), index if source.is_volume else None, source.num_slices, meta)


# ------------------------------------------------------------------------------------------------ public API


def load_image(path, slice_index: int | None = None, size: int | None = IMAGE_SIZE,
               key: str | None = None) -> LoadedImage:
    """Load one slice of ``path`` and preprocess it to ``float32 (size, size)`` in [0, 1].

    ``slice_index`` picks the slice of a volume (default: the centre slice ``num_slices // 2``); ``size=None``
    keeps the full field of view unresized; ``key`` names the HDF5 dataset or ``.npz`` array to read.
    """
    with _open_source(path, key) as (checked, source):
        index = _check_slice_index(slice_index, source.num_slices, source.is_volume, checked)
        return _load_slice(checked, source, index, size)


def load_volume_slices(
    path,
    slice_indices: Sequence[int] | None = None,
    *,
    near_centre: int | None = None,
    size: int | None = IMAGE_SIZE,
    key: str | None = None,
) -> list[LoadedImage]:
    """Load several slices of one file, opening it once.

    Give either ``slice_indices`` or ``near_centre=K`` (the ``K`` slices around the centre, see
    :func:`centre_slice_indices`); with neither, every slice is loaded.
    """
    if slice_indices is not None and near_centre is not None:
        raise DataError("give either slice_indices or near_centre, not both")
    with _open_source(path, key) as (checked, source):
        if near_centre is not None:
            indices = centre_slice_indices(source.num_slices, near_centre)
        elif slice_indices is not None:
            indices = [_check_slice_index(i, source.num_slices, source.is_volume, checked) for i in slice_indices]
        else:
            indices = list(range(source.num_slices))
        if size is not None:
            limits.check_read(len(indices) * size * size * 4, f"{len(indices)} slices of {checked}")
        return [_load_slice(checked, source, i, size) for i in indices]


def file_attributes(path) -> dict:
    """Root attributes of an HDF5 file (JSON-safe), e.g. fastMRI's ``acquisition``, ``patient_id``, ``max``."""
    path = _check_path(path)
    if path.suffix.lower() not in HDF5_SUFFIXES:
        return {}
    with _open_hdf5_file(path) as h5file:
        return _hdf5_attributes(h5file)


def describe_file(path) -> dict:
    """What a file holds, as a JSON-safe dict (for ``genreg info`` and the GUI).

    Always: ``path``, ``format`` (``hdf5``/``image``/``npy``/``npz``), ``kind``, ``size_bytes``, ``summary`` (one
    line), ``num_slices`` and ``image_key`` (``None`` when no loadable image is found; ``problem`` then says why).
    HDF5 adds ``datasets`` (name, shape, dtype), ``attributes``, ``has_ismrmrd_header``, ``image_key_candidates``
    (the 2-D/3-D numeric datasets a ``key`` could name; see :class:`ImageKeyError`), and for fastMRI files
    ``coils``; a slice set adds ``count``, ``image_size`` and ``volumes``. Images add ``width``, ``height``,
    ``mode``, ``frames``; ``.npy`` adds ``shape`` and ``dtype``; ``.npz`` adds ``arrays``.
    """
    checked = _check_path(path)
    info: dict = {"path": str(checked), "size_bytes": checked.stat().st_size}
    if checked.suffix.lower() in HDF5_SUFFIXES:
        _describe_hdf5(checked, info)
    else:
        _describe_other(checked, info)
    info["summary"] = _summary(info)
    return info


def _dtype_name(dataset) -> str:
    """The dtype of an HDF5 dataset, with variable-length strings named as such rather than ``object``."""
    import h5py

    string = h5py.check_string_dtype(dataset.dtype)
    return f"str ({string.encoding})" if string is not None and string.length is None else str(dataset.dtype)


def _describe_hdf5(path: Path, info: dict) -> None:
    with _open_hdf5_file(path) as h5file:
        datasets = _hdf5_datasets(h5file)
        attributes = _hdf5_attributes(h5file)
        info.update(
            format="hdf5",
            datasets=[{"name": n, "shape": None if d.shape is None else list(d.shape), "dtype": _dtype_name(d)}
                      for n, d in sorted(datasets.items())],
            attributes=attributes,
            has_ismrmrd_header=ISMRMRD_HEADER_KEY in h5file,
            image_key_candidates=_image_key_candidates(datasets),
        )
        is_slice_set = attributes.get("format") == SLICE_SET_FORMAT
        is_fastmri = any(k in datasets for k in ("kspace", "reconstruction_esc", "reconstruction_rss"))
        info["kind"] = "slice_set" if is_slice_set else "fastmri" if is_fastmri else "hdf5"
        try:
            source = _hdf5_source(h5file, None, path)
            info.update(image_key=source.meta["key"], num_slices=source.num_slices)
        except DataError as exc:
            info.update(image_key=None, num_slices=0, problem=str(exc))
        if is_fastmri and KSPACE_KEY in datasets and datasets[KSPACE_KEY].shape is not None:
            shape = datasets[KSPACE_KEY].shape
            info["coils"] = shape[1] if len(shape) == 4 else 1
        if is_slice_set and "images" in datasets and datasets["images"].shape:
            images = datasets["images"]
            info.update(count=int(images.shape[0]), image_size=list(images.shape[1:]))
            volume = datasets.get("volume")
            if (volume is not None and not volume.external and not volume.is_virtual
                    and limits.count(volume.shape or ()) <= limits.MAX_METADATA_BYTES // 8):
                try:
                    info["volumes"] = len({v for v in volume.asstr()[...]})
                except (OSError, TypeError, ValueError):  # not strings, or damaged
                    pass


def _describe_other(path: Path, info: dict) -> None:
    try:
        with _open_source(path) as (_, source):
            meta = source.meta
            info.update(format=meta["format"], num_slices=source.num_slices, image_key=meta.get("key", "image"))
    except DataError as exc:
        raise DataError(f"cannot describe {path}: {exc}") from None
    if meta["format"] == "image":
        info.update(kind="image", **{k: meta[k] for k in ("width", "height", "mode", "frames")})
        return
    info["kind"] = "array"
    if meta["format"] == "npy":
        info.update(shape=meta["volume_shape"], dtype=meta["dtype"])
    else:
        info["arrays"] = meta["arrays"]


def _summary(info: dict) -> str:
    name = Path(info["path"]).name
    slices = info.get("num_slices", 0)
    if info["kind"] == "image":
        frames = f", {info['frames']} frames" if info["frames"] > 1 else ""
        return f"{name}: {info['width']}x{info['height']} image, mode {info['mode']}{frames}"
    if info["kind"] == "array" and info["format"] == "npy":
        volume = f", {slices} slices" if slices > 1 else ""
        return f"{name}: NumPy array {tuple(info['shape'])} {info['dtype']}{volume}"
    if info["kind"] == "array":
        return f"{name}: NumPy archive of {len(info['arrays'])} array(s), image from {info['image_key']!r}, " \
            f"{slices} slice(s)"
    if info["kind"] == "slice_set":
        return (f"{name}: slice set of {info.get('count', 0)} images {tuple(info.get('image_size', ()))} "
                f"from {info.get('volumes', '?')} volumes")
    if info["kind"] == "fastmri":
        attrs = info["attributes"]
        coil = "multi-coil" if info.get("coils", 1) > 1 or info["image_key"] == "reconstruction_rss" else "single-coil"
        acquisition = f", {attrs['acquisition']}" if "acquisition" in attrs else ""
        return f"{name}: fastMRI {coil} volume{acquisition}, {slices} slices, image from {info['image_key']!r}"
    if info["image_key"] is None:
        return f"{name}: HDF5 file with no known image dataset ({len(info['datasets'])} datasets)"
    return f"{name}: HDF5 file, {slices} slice(s) from {info['image_key']!r}"
