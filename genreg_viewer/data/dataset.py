"""Slice sets: preprocessed 2-D slices from a folder of fastMRI volumes, in one HDF5 file for training and testing.

As in the paper (Sec. 4.1): fastMRI single-coil knee volumes with ``acquisition == "CORPD_FBK"`` (proton density
without fat suppression), ``K`` slices around the centre of each volume (:func:`~genreg_viewer.data.loading.
centre_slice_indices`; the predecessor paper used slices 12-19), taken from the ground-truth reconstruction and
preprocessed to ``size x size`` in [0, 1] (:func:`~genreg_viewer.data.preprocess.preprocess`). Build the training set
from fastMRI's train folder and the test set from its validation folder, so that no volume is in both.

File layout (written atomically):

* ``images``: ``float32 (N, size, size)`` in [0, 1];
* ``volume``: ``(N,)`` UTF-8 strings, the source file name of each slice; ``slice``: ``int32 (N,)`` its index;
* attributes ``format = "genreg-slice-set"``, ``version``, ``size``, ``slices_near_centre``, ``acquisition``,
  ``source_dir``, ``preprocessing``.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..defaults import IMAGE_SIZE
from ..fileio import atomic_path
from . import limits
from .loading import SLICE_SET_FORMAT, file_attributes, load_volume_slices
from .errors import DataError
from .preprocess import MIN_SIDE, RESAMPLE_FILTER

SLICE_SET_VERSION = 1
ANY_ACQUISITION = "any"
DEFAULT_ACQUISITION = "CORPD_FBK"


@dataclass
class SliceSetSummary:
    """What :func:`build_slice_set` wrote and what it left out."""

    path: str
    num_images: int
    num_volumes: int
    size: int
    acquisition: str
    filtered_out: int = 0  #: volumes skipped because of their ``acquisition``
    skipped: list[tuple[str, str]] = field(default_factory=list)  #: (file name, reason) for unreadable volumes

    def line(self) -> str:
        """One-line summary for the CLI."""
        text = f"{self.num_images} slices of {self.size}x{self.size} from {self.num_volumes} volume(s) -> {self.path}"
        if self.filtered_out:
            text += f"; {self.filtered_out} volume(s) with another acquisition left out"
        if self.skipped:
            text += f"; {len(self.skipped)} unreadable volume(s) skipped"
        return text


def _fastmri_files(folder: Path, out_path: Path) -> list[Path]:
    if not folder.exists():
        raise DataError(f"folder not found: {folder}")
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder; give the folder holding the fastMRI .h5 volumes")
    out_resolved = out_path.resolve()
    files = sorted(p for p in folder.glob("*.h5") if p.is_file() and p.resolve() != out_resolved)
    if not files:
        raise DataError(f"no .h5 files in {folder}; expected a folder of fastMRI volumes (e.g. singlecoil_train)")
    return files


def _check_build_arguments(slices_near_centre: int, size: int, out_path: Path) -> None:
    if isinstance(slices_near_centre, bool) or not isinstance(slices_near_centre, (int, np.integer)) \
            or slices_near_centre < 1:
        raise DataError(f"--slices-near-centre must be a positive integer, got {slices_near_centre!r}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < MIN_SIDE:
        raise DataError(f"--size must be an integer of at least {MIN_SIDE}, got {size!r}")
    limits.check_side(size, "--size")
    if out_path.suffix.lower() not in (".h5", ".hdf5"):
        raise DataError(f"the slice set is an HDF5 file; name it with .h5, got {out_path}")
    if out_path.is_dir():
        raise DataError(f"{out_path} is a folder; give the path of the .h5 file to write")


def _no_volume_error(folder: Path, acquisition: str, found: Counter, skipped: list[tuple[str, str]]) -> DataError:
    if skipped and not found:
        reasons = "; ".join(f"{name}: {why}" for name, why in skipped[:3])
        return DataError(f"no readable fastMRI volume in {folder} ({len(skipped)} skipped: {reasons})")
    seen = ", ".join(f"{acq} x{n}" for acq, n in found.most_common()) or "none"
    return DataError(f"no volume in {folder} has acquisition {acquisition!r} (found: {seen}); "
                     f"use --acquisition any or one of those")


def build_slice_set(
    fastmri_dir: str | os.PathLike,
    out_path: str | os.PathLike,
    slices_near_centre: int,
    size: int = IMAGE_SIZE,
    acquisition: str = DEFAULT_ACQUISITION,
    progress: bool = True,
) -> SliceSetSummary:
    """Build a slice set from the ``.h5`` volumes directly in ``fastmri_dir`` (not its sub-folders).

    Volumes whose ``acquisition`` attribute differs from ``acquisition`` are left out (``"any"`` keeps all);
    unreadable volumes are skipped and listed in the summary. Raises :class:`DataError` when the folder holds no
    ``.h5`` file or no volume qualifies (then nothing is written).
    """
    import h5py
    from tqdm import tqdm

    folder, out_path = Path(fastmri_dir), Path(out_path)
    _check_build_arguments(slices_near_centre, size, out_path)
    files = _fastmri_files(folder, out_path)
    found_acquisitions: Counter = Counter()
    skipped: list[tuple[str, str]] = []
    filtered_out = 0
    volumes: list[str] = []
    slice_indices: list[int] = []
    with atomic_path(out_path) as tmp, h5py.File(tmp, "w") as out:
        images = out.create_dataset("images", shape=(0, size, size), maxshape=(None, size, size), dtype="float32",
                                    chunks=(1, size, size))
        bar = tqdm(files, desc="volumes", unit="vol", disable=not progress, file=sys.stderr)
        for path in bar:
            try:
                attributes = file_attributes(path)
                if attributes.get("format") == SLICE_SET_FORMAT:
                    continue  # an earlier slice set in the same folder
                found_acquisitions[str(attributes.get("acquisition", "(none)"))] += 1
                if acquisition != ANY_ACQUISITION and attributes.get("acquisition") != acquisition:
                    filtered_out += 1
                    continue
                loaded = load_volume_slices(path, near_centre=slices_near_centre, size=size)
            except DataError as exc:
                skipped.append((path.name, str(exc)))
                continue
            start = images.shape[0]
            images.resize(start + len(loaded), axis=0)
            images[start:] = np.stack([item.image for item in loaded])
            volumes += [path.name] * len(loaded)
            slice_indices += [item.slice_index or 0 for item in loaded]
            bar.set_postfix(slices=len(volumes))
        bar.close()
        if not volumes:
            raise _no_volume_error(folder, acquisition, found_acquisitions, skipped)
        out.create_dataset("volume", data=np.array(volumes, dtype=object), dtype=h5py.string_dtype("utf-8"))
        out.create_dataset("slice", data=np.asarray(slice_indices, dtype=np.int32))
        out.attrs.update({
            "format": SLICE_SET_FORMAT, "version": SLICE_SET_VERSION, "size": size,
            "slices_near_centre": slices_near_centre, "acquisition": acquisition, "source_dir": str(folder),
            "preprocessing": f"centre crop to square, Pillow {RESAMPLE_FILTER.name} resize, linear rescale to [0, 1]",
        })
    return SliceSetSummary(str(out_path), len(volumes), len(set(volumes)), size, acquisition,
                           filtered_out=filtered_out, skipped=skipped)


def _slice_set_dataset(h5file, name: str, path: Path):
    """The dataset ``name`` of a slice set, or None when absent. Refused (``DataError``): a link to another file or
    another place (soft and external links), a group, data stored outside the file (external raw files, virtual
    datasets) and chunks beyond the limits, as for any HDF5 image (:func:`~genreg_viewer.data.loading.load_image`)."""
    import h5py

    from .loading import check_hdf5_dataset

    link = h5file.get(name, getlink=True)
    if link is None:
        return None
    if not isinstance(link, h5py.HardLink):
        where = "another file" if isinstance(link, h5py.ExternalLink) else "elsewhere"
        raise DataError(f"{name!r} in slice set {path} is a link to {where}; only data inside the file itself is read")
    dataset = h5file[name]
    if not isinstance(dataset, h5py.Dataset):
        raise DataError(f"{name!r} in slice set {path} is not a dataset")
    check_hdf5_dataset(dataset, name, path)
    return dataset


def _open_slice_set(path: str | os.PathLike):
    import h5py

    path = Path(path)
    if not path.is_file():
        raise DataError(f"slice set not found: {path}")
    if not h5py.is_hdf5(path):
        raise DataError(f"{path} is not an HDF5 file (expected a slice set from 'genreg dataset build')")
    try:
        h5file = h5py.File(path, "r")
    except OSError as exc:
        raise DataError(f"could not open slice set {path}: {exc}") from exc
    try:
        images = _slice_set_dataset(h5file, "images", path)
        if images is None or images.ndim != 3:
            raise DataError(f"{path} is not a slice set: it has no 3-D dataset 'images' (build one with "
                            "'genreg dataset build')")
        if images.dtype.kind not in "fiu":
            raise DataError(f"the images of slice set {path} are {images.dtype}; expected real numbers (float32)")
        for name in ("volume", "slice"):
            _slice_set_dataset(h5file, name, path)
    except BaseException:
        h5file.close()
        raise
    return h5file


def slice_set_size(path: str | os.PathLike) -> int:
    """The number of images of a slice set (nothing of them is read)."""
    with _open_slice_set(path) as h5file:
        return int(h5file["images"].shape[0])


def load_slice_set(path: str | os.PathLike, indices: Sequence[int] | None = None) -> np.ndarray:
    """The images of a slice set (all, or those at ``indices``), ``float32 (N, H, W)`` in [0, 1]; only what is
    selected is read, and its size is checked against the limits first."""
    with _open_slice_set(path) as h5file:
        dataset = h5file["images"]
        count = dataset.shape[0] if indices is None else len(indices)
        # what is read (the stored type) and, for another type, its float32 copy
        itemsize = dataset.dtype.itemsize + (0 if dataset.dtype == np.float32 else 4)
        limits.check_images(count, dataset.shape[1:], f"slice set {path}", itemsize=itemsize)
        if indices is None:
            images = np.asarray(dataset[...], dtype=np.float32)
        else:
            if any(not 0 <= int(i) < dataset.shape[0] for i in indices):
                raise DataError(f"slice set {path} has {dataset.shape[0]} images; an index is out of range")
            images = np.empty((count, *dataset.shape[1:]), np.float32)
            for j, i in enumerate(indices):
                images[j] = dataset[int(i)]
    if not np.isfinite(images).all():
        raise DataError(f"slice set {path} contains NaN or infinite values")
    return images


def load_slice_set_sources(path: str | os.PathLike) -> list[tuple[str, int]]:
    """``(volume file name, slice index)`` of every image of a slice set, in order."""
    with _open_slice_set(path) as h5file:
        volume, index = h5file.get("volume"), h5file.get("slice")
        if volume is None or index is None:
            raise DataError(f"slice set {path} does not record its sources (datasets 'volume' and 'slice')")
        count = h5file["images"].shape[0]
        if volume.shape != (count,) or index.shape != (count,):
            raise DataError(f"slice set {path}: 'volume' {volume.shape} and 'slice' {index.shape} must both have "
                            f"one entry per image ({count},)")
        if volume.dtype.kind not in "OSU" or index.dtype.kind not in "iu":
            raise DataError(f"slice set {path}: 'volume' must hold strings and 'slice' integers, got "
                            f"{volume.dtype} and {index.dtype}")
        limits.check_read(count * (volume.dtype.itemsize + 8 + 64), f"the sources of slice set {path}")
        try:
            names = volume.asstr()[...]
        except (TypeError, ValueError, UnicodeDecodeError) as exc:
            raise DataError(f"slice set {path}: 'volume' cannot be read as text ({exc})") from None
        return [(str(n), int(i)) for n, i in zip(names, index[...])]
