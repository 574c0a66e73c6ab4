"""Slice sets from a 3-D array in a MATLAB ``.mat`` file (e.g. ``knee3D.mat`` of the FAIR toolbox, C4IR/FAIR.m).

Both kinds of MAT file are read: v4/v5/v7 with :func:`scipy.io.loadmat` (only the chosen variable), v7.3 (an HDF5
file) with h5py, where the variable is a top-level dataset whose axes are stored in reverse order (it is transposed
back, so an axis means the same in both kinds) and datasets stored outside the file (external, virtual) are refused
as by the image loader. The variable's shape and class are read from the header (:func:`scipy.io.whosmat`, the
HDF5 dataset) and bounded before its data is loaded.

``key`` names the variable (needed when the file holds more than one 3-D numeric array); ``axis`` the axis sliced
along. By default it is the axis whose slices have the most pixels, then the most square ones (for FAIR's
128 x 64 x 128 knee: axis 1, slices of 128 x 128). Each slice is preprocessed like every other format
(:func:`~genreg_viewer.data.preprocess.preprocess`), after an optional quarter turn (``rotate``: a MAT file does
not say which way is up); the volume is named ``mat/<file stem>/<key>``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..defaults import IMAGE_SIZE
from . import limits
from .dataset import _check_build_arguments
from .loading import check_hdf5_dataset, centre_slice_indices
from .errors import DataError
from .preprocess import preprocess
from .writer import BuildSummary, open_slice_set_writer

#: bytes per element of MATLAB's numeric classes (as :func:`scipy.io.whosmat` names them)
MATLAB_ITEMSIZE = {"double": 8, "single": 4, "int8": 1, "uint8": 1, "int16": 2, "uint16": 2, "int32": 4,
                   "uint32": 4, "int64": 8, "uint64": 8, "logical": 1}
DEFAULT_TERMS = "those of the MATLAB file's source (not recorded in the file); do not redistribute unless they allow"


@dataclass(frozen=True)
class MatVariable:
    """A variable's name, MATLAB shape, class and bytes per element (complex counted twice)."""

    name: str
    shape: tuple[int, ...]
    matlab_class: str
    itemsize: int

    @property
    def is_volume(self) -> bool:
        return len(self.shape) == 3 and min(self.shape) > 0 and self.matlab_class in MATLAB_ITEMSIZE

    def describe(self) -> str:
        return f"{self.name} {'x'.join(map(str, self.shape))} {self.matlab_class}"


def _hdf5_variables(h5file) -> dict[str, MatVariable]:
    import h5py

    found = {}
    for name in h5file:
        if name.startswith("#"):  # "#refs#", "#subsystem#": MATLAB's internal storage
            continue
        link = h5file.get(name, getlink=True)
        if not isinstance(link, h5py.HardLink):
            continue
        obj = h5file[name]
        if not isinstance(obj, h5py.Dataset):
            continue
        matlab_class = obj.attrs.get("MATLAB_class", b"")
        matlab_class = matlab_class.decode() if isinstance(matlab_class, bytes) else str(matlab_class)
        dtype = base = obj.dtype
        if dtype.names and set(dtype.names) >= {"real", "imag"}:  # complex: a compound of two numbers
            base = dtype["real"]
            numeric = all(dtype[part].kind in "iuf" for part in ("real", "imag"))
        else:
            numeric = dtype.kind in "biuf"
        if not numeric:  # cell arrays (references), structs, strings: never a volume
            matlab_class = f"{matlab_class or 'non-numeric'} ({dtype})"
        elif not matlab_class:
            matlab_class = {"float64": "double", "float32": "single", "bool": "logical"}.get(base.name, base.name)
        itemsize = dtype.itemsize
        found[name] = MatVariable(name, tuple(int(n) for n in reversed(obj.shape)), matlab_class, itemsize)
    return found


def read_mat_variables(path: Path) -> dict[str, MatVariable]:
    """Every variable of a MAT file, from its header only."""
    import h5py

    if not path.is_file():
        raise DataError(f"MATLAB file not found: {path}")
    if h5py.is_hdf5(path):
        try:
            with h5py.File(path, "r") as h5file:
                return _hdf5_variables(h5file)
        except OSError as exc:
            raise DataError(f"could not open MATLAB v7.3 file {path}: {exc}") from exc
    from scipy.io import whosmat

    try:
        entries = whosmat(str(path))
    except Exception as exc:  # noqa: BLE001 - scipy raises ValueError, TypeError, MatReadError, ... for bad files
        raise DataError(f"{path} is not a readable MATLAB file ({type(exc).__name__}: {exc})") from None
    return {name: MatVariable(name, tuple(int(n) for n in shape), str(matlab_class),
                              MATLAB_ITEMSIZE.get(str(matlab_class), 8))
            for name, shape, matlab_class in entries}


def choose_variable(variables: dict[str, MatVariable], key: str | None, path: Path) -> MatVariable:
    listing = ", ".join(v.describe() for v in variables.values()) or "no variables"
    if key is not None:
        if key not in variables:
            raise DataError(f"{path} has no variable {key!r}; it holds: {listing}")
        variable = variables[key]
        if not variable.is_volume:
            raise DataError(f"variable {variable.describe()} in {path} is not a 3-D numeric array")
        return variable
    volumes = [v for v in variables.values() if v.is_volume]
    if len(volumes) != 1:
        raise DataError(f"{path} holds {len(volumes) or 'no'} 3-D numeric arrays ({listing}); "
                        + ("choose one with --key NAME" if volumes else "give a file with a 3-D array"))
    return volumes[0]


def best_axis(shape: tuple[int, ...]) -> int:
    """The axis whose slices have the most pixels, then the most square ones, then the first."""
    def score(axis: int) -> tuple[int, float, int]:
        rest = [n for i, n in enumerate(shape) if i != axis]
        return (rest[0] * rest[1], min(rest) / max(rest), -axis)

    return max(range(len(shape)), key=score)


def check_axis(axis, shape: tuple[int, ...]) -> int:
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or not -len(shape) <= axis < len(shape):
        raise DataError(f"--axis must be 0, 1 or 2 (or -3 to -1) for a {'x'.join(map(str, shape))} array, "
                        f"got {axis!r}")
    return int(axis) % len(shape)


def load_mat_volume(path: str | os.PathLike, key: str | None = None) -> tuple[str, np.ndarray]:
    """``(name, array)`` of a 3-D numeric variable, in MATLAB's axis order; bounded from the header first."""
    path = Path(path)
    variable = choose_variable(read_mat_variables(path), key, path)
    what = f"variable {variable.describe()} in {path}"
    limits.check_read(limits.count(variable.shape) * variable.itemsize, what)
    for axis in range(3):
        limits.check_slice(tuple(n for i, n in enumerate(variable.shape) if i != axis), variable.itemsize, what)
    import h5py

    if h5py.is_hdf5(path):
        with h5py.File(path, "r") as h5file:
            dataset = h5file[variable.name]
            check_hdf5_dataset(dataset, variable.name, path)
            try:
                raw = dataset[...]
            except (OSError, ValueError, TypeError) as exc:
                raise DataError(f"could not read {what}: {exc}") from exc
        if raw.dtype.names:
            raw = raw["real"] + 1j * raw["imag"]
        array = np.asarray(raw).T  # HDF5 holds MATLAB's column-major array with the axes reversed
    else:
        from scipy.io import loadmat

        try:
            array = loadmat(str(path), variable_names=[variable.name])[variable.name]
        except Exception as exc:  # noqa: BLE001 - scipy raises many types for damaged files
            raise DataError(f"could not read {what} ({type(exc).__name__}: {exc})") from None
    array = np.asarray(array)
    if array.shape != variable.shape or array.dtype == object:
        raise DataError(f"{what}: read an array of {array.shape} {array.dtype}, the header said "
                        f"{variable.shape} {variable.matlab_class}")
    return variable.name, array


def build_mat_slice_set(
    mat_path: str | os.PathLike,
    out_path: str | os.PathLike,
    key: str | None = None,
    axis: int | None = None,
    slices_near_centre: int | None = None,
    size: int = IMAGE_SIZE,
    rotate: int = 0,
    terms: str | None = None,
    progress: bool = True,
) -> BuildSummary:
    """Build a slice set from the slices of one 3-D variable along ``axis`` (see the module docstring);
    ``slices_near_centre=None`` keeps every slice that is not constant, ``K`` the ``K`` around the centre.
    ``rotate`` (0, 90, 180 or 270 degrees counter-clockwise, as :func:`numpy.rot90`) turns every slice, e.g. to
    show a knee upright like the other sets (FAIR's knee: 270)."""
    mat_path, out_path = Path(mat_path), Path(out_path)
    if isinstance(rotate, bool) or rotate not in (0, 90, 180, 270):
        raise DataError(f"--rotate must be 0, 90, 180 or 270 (degrees counter-clockwise), got {rotate!r}")
    _check_build_arguments(slices_near_centre if slices_near_centre is not None else 1, size, out_path)
    if mat_path.is_dir():
        raise DataError(f"{mat_path} is a folder; give the .mat file")
    name, volume = load_mat_volume(mat_path, key)
    chosen = best_axis(volume.shape) if axis is None else check_axis(axis, volume.shape)
    stack = np.moveaxis(volume, chosen, 0)
    indices = (range(stack.shape[0]) if slices_near_centre is None
               else centre_slice_indices(stack.shape[0], slices_near_centre))
    limits.check_images(len(indices), (size, size), f"slice set {out_path}")
    images, kept, constant = [], [], 0
    for index in indices:
        try:
            images.append(preprocess(np.rot90(stack[index], rotate // 90), size))
            kept.append(int(index))
        except DataError:
            constant += 1
    if not images:
        raise DataError(f"no usable slice in {name} of {mat_path} along axis {chosen} (every slice is constant)")
    volume_name = f"mat/{mat_path.stem}/{name}"
    acquisition = f"mat:{mat_path.stem}/{name}:axis{chosen}"
    with open_slice_set_writer(out_path, size) as writer:
        writer.add(images, volume_name, kept)
        writer.finish({
            "slices_near_centre": slices_near_centre or 0, "acquisition": acquisition, "source_file": str(mat_path),
            "key": name, "axis": chosen, "rotate": rotate, "terms": terms or DEFAULT_TERMS,
        })
    rows, cols = stack.shape[1:]
    how = "chosen with --axis" if axis is not None else "largest, most square slices"
    how += f", turned {rotate} degrees" if rotate else ""
    return BuildSummary(
        str(out_path), len(images), 1, size,
        f"{name} {'x'.join(map(str, volume.shape))} {volume.dtype} in {mat_path.name}", acquisition, [volume_name],
        notes=[f"slices along axis {chosen} ({rows}x{cols}, {how}), {len(kept)} of {stack.shape[0]}"],
        skipped_slices=constant,
    )
