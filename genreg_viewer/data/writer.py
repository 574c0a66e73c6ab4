"""Writing slice sets (the layout of :mod:`genreg_viewer.data.dataset`) one volume at a time, shared by the builders
for RefineGAN knees, DICOM series and MATLAB arrays (:mod:`.refinegan`, :mod:`.dicom`, :mod:`.matfile`) and
``genreg dataset merge`` (:mod:`.merge`).

A builder opens ``with open_slice_set_writer(out, size) as writer:``, calls :meth:`SliceSetWriter.add` per volume
and :meth:`SliceSetWriter.finish` with the attributes; the file appears atomically when the block ends without an
exception (nothing is left behind otherwise).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..fileio import atomic_path
from .dataset import SLICE_SET_VERSION
from .loading import SLICE_SET_FORMAT
from .errors import DataError
from .preprocess import RESAMPLE_FILTER

PREPROCESSING = f"centre crop to square, Pillow {RESAMPLE_FILTER.name} resize, linear rescale to [0, 1]"


class SliceSetWriter:
    """Appends preprocessed slices to an open HDF5 file in the slice-set layout."""

    def __init__(self, h5file, size: int):
        self.h5file = h5file
        self.size = int(size)
        self.images = h5file.create_dataset("images", shape=(0, size, size), maxshape=(None, size, size),
                                            dtype="float32", chunks=(1, size, size))
        self.volumes: list[str] = []
        self.slices: list[int] = []
        self.extra: dict[str, list[str]] = {}

    def add(self, images: Sequence[np.ndarray] | np.ndarray, volume: str, slices: Sequence[int],
            **extra: Sequence[str]) -> None:
        """Append ``images`` (each ``size x size`` in [0, 1]) of ``volume`` with their slice indices; ``extra``
        names further per-image string datasets (e.g. ``file=``), which every call must then give."""
        if len(images) == 0:
            return
        stack = np.asarray(np.stack(list(images)) if not isinstance(images, np.ndarray) else images, np.float32)
        if stack.shape[1:] != (self.size, self.size) or len(slices) != len(stack):
            raise ValueError(f"slices of {stack.shape[1:]} (x{len(slices)} indices) for a set of {self.size}")
        start = self.images.shape[0]
        self.images.resize(start + len(stack), axis=0)
        self.images[start:] = stack
        self.volumes += [volume] * len(stack)
        self.slices += [int(i) for i in slices]
        for name, values in extra.items():
            self.extra.setdefault(name, []).extend(str(v) for v in values)

    def __len__(self) -> int:
        return len(self.volumes)

    def finish(self, attributes: dict) -> None:
        """Write the ``volume`` and ``slice`` datasets (and any extra ones) and the attributes."""
        import h5py

        if not self.volumes:
            raise DataError("no usable slice: nothing to write")
        strings = h5py.string_dtype("utf-8")
        self.h5file.create_dataset("volume", data=np.array(self.volumes, dtype=object), dtype=strings)
        self.h5file.create_dataset("slice", data=np.asarray(self.slices, dtype=np.int32))
        for name, values in self.extra.items():
            if len(values) != len(self.volumes):
                raise ValueError(f"extra dataset {name!r} was not given for every slice")
            self.h5file.create_dataset(name, data=np.array(values, dtype=object), dtype=strings)
        self.h5file.attrs.update({"format": SLICE_SET_FORMAT, "version": SLICE_SET_VERSION, "size": self.size,
                                  "preprocessing": PREPROCESSING, **attributes})


@contextlib.contextmanager
def open_slice_set_writer(out_path: str | os.PathLike, size: int) -> Iterator[SliceSetWriter]:
    """A :class:`SliceSetWriter` on a temporary file that replaces ``out_path`` when the block succeeds."""
    import h5py

    with atomic_path(out_path) as tmp, h5py.File(tmp, "w") as h5file:
        yield SliceSetWriter(h5file, size)


@dataclass
class BuildSummary:
    """What a built slice set holds (printed by ``genreg dataset build`` / ``merge``; ``--json`` gives the fields)."""

    path: str
    num_images: int
    num_volumes: int
    size: int
    source: str  #: what was read, in words (e.g. "RefineGAN knees, subjects 0-13")
    acquisition: str
    volumes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  #: extra facts for the summary line (chosen axis, clusters)
    skipped_slices: int = 0  #: constant (empty) slices left out
    skipped: list[tuple[str, str]] = field(default_factory=list)  #: (file, reason) for unreadable inputs

    def line(self) -> str:
        text = (f"{self.num_images} slices of {self.size}x{self.size} from {self.num_volumes} volume(s) "
                f"({self.source}) -> {self.path}")
        for note in self.notes:
            text += f"; {note}"
        if self.skipped_slices:
            text += f"; {self.skipped_slices} constant slice(s) left out"
        if self.skipped:
            text += f"; {len(self.skipped)} unreadable file(s) skipped"
        return text


def check_out_path(out_path: str | os.PathLike, inputs: Sequence[str | os.PathLike] = ()) -> Path:
    """``out_path`` as a :class:`Path`, refused (``DataError``) when it is one of ``inputs``."""
    out = Path(out_path)
    for item in inputs:
        if Path(item).exists() and out.exists() and Path(item).resolve() == out.resolve():
            raise DataError(f"{out} is also an input; write the slice set to another file")
    return out
