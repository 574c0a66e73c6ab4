"""Slice sets from MRNet knee exams (Bien et al. 2018, Stanford ML Group), for training and testing on real knees.

MRNet ships one ``.npy`` per exam and plane: ``ROOT/{train,valid}/{axial,coronal,sagittal}/NNNN.npy``, each a
``uint8 (S, 256, 256)`` stack (coronal T1, sagittal T2 with fat saturation, axial proton density with fat
saturation). :func:`build_mrnet_slice_set` finds every ``<plane>/NNNN.npy`` below ``ROOT`` (any depth, so a copy
with extra folders, or two copies of the same exams, work; an exam found twice is used once), keeps the chosen
planes and exam numbers, preprocesses each slice exactly as fastMRI slices are (:func:`~genreg_viewer.data.
preprocess.preprocess`: centre crop, Lanczos resize, linear rescale to [0, 1]) and writes the same slice-set layout
as :func:`~genreg_viewer.data.dataset.build_slice_set` (``volume`` = ``"<plane>/NNNN"``), so training, tuning and
benchmarks take either.

Split by exam (``exams="0-1124"``, ``"1125-1129"``, ``"1130-"``): an exam is one knee of one patient, so no patient
is in two splits. MRNet's data is under its research-use agreement: use it locally, never commit it or images made
from it.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..defaults import IMAGE_SIZE
from ..fileio import atomic_path
from . import limits
from .dataset import SLICE_SET_VERSION, _check_build_arguments
from .loading import SLICE_SET_FORMAT, centre_slice_indices
from .errors import DataError
from .preprocess import RESAMPLE_FILTER, preprocess

MRNET_PLANES = ("coronal", "sagittal", "axial")
#: MRNet stacks are uint8 (S, 256, 256); anything far larger is not an MRNet exam and is refused before reading
MAX_MRNET_SLICES = 512
MAX_MRNET_SIDE = 1024
#: a slice whose preprocessed mean is below this is (nearly) empty background and is skipped
MIN_MEAN_INTENSITY = 0.02


@dataclass(frozen=True)
class MRNetVolume:
    """One MRNet volume: exam number, plane (axial, coronal, sagittal) and its ``.npy`` file."""

    exam: int
    plane: str
    path: Path

    @property
    def name(self) -> str:
        return f"{self.plane}/{self.exam:04d}"


def parse_exam_ranges(text: str | None) -> list[tuple[int, int]] | None:
    """``"0-1124,1200-"`` -> ``[(0, 1124), (1200, inf)]``; ``"1130"`` is one exam; ``None``/``""`` keeps all."""
    if text is None or not str(text).strip():
        return None
    ranges = []
    for part in str(text).split(","):
        match = re.fullmatch(r"\s*(\d+)?\s*(-)?\s*(\d+)?\s*", part)
        if not match or not (match.group(1) or match.group(3)) or (match.group(3) and not match.group(2)):
            raise DataError(f"exam ranges are written like 0-1124, 1130- or 0-10,1120-1124; got {text!r}")
        low = int(match.group(1) or 0)
        high = int(match.group(3)) if match.group(3) else (sys.maxsize if match.group(2) else low)
        if high < low:
            raise DataError(f"exam range {part.strip()!r} is empty (end before start)")
        ranges.append((low, high))
    return ranges


def _in_ranges(exam: int, ranges: list[tuple[int, int]] | None) -> bool:
    return ranges is None or any(low <= exam <= high for low, high in ranges)


def find_mrnet_volumes(root: str | os.PathLike, planes=MRNET_PLANES, exams: str | None = None) -> list[MRNetVolume]:
    """Every ``<plane>/NNNN.npy`` below ``root`` for the given planes and exam ranges, sorted by plane order, then
    exam; an exam/plane found in several places is taken once (the first path in sorted order)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root} is not a folder; give the folder holding MRNet's train/valid folders")
    unknown = [p for p in planes if p not in MRNET_PLANES]
    if unknown or not planes:
        raise DataError(f"planes must be among {', '.join(MRNET_PLANES)}; got {', '.join(planes) or 'none'}")
    ranges = parse_exam_ranges(exams)
    found: dict[tuple[str, int], Path] = {}
    for path in sorted(root.rglob("*.npy")):
        plane = path.parent.name
        if plane in planes and path.stem.isdigit() and path.is_file():
            exam = int(path.stem)
            if _in_ranges(exam, ranges):
                found.setdefault((plane, exam), path)
    if not found:
        raise DataError(f"no MRNet exams ({'/'.join(planes)} .npy files named by exam number"
                        f"{', exams ' + exams if exams else ''}) below {root}")
    order = {p: i for i, p in enumerate(MRNET_PLANES)}
    return [MRNetVolume(exam, plane, path) for (plane, exam), path in
            sorted(found.items(), key=lambda item: (order[item[0][0]], item[0][1]))]


def load_mrnet_stack(path: Path) -> np.ndarray:
    """The ``(S, H, W)`` stack of one exam/plane; the header is checked before the data is read (no pickles)."""
    try:
        with open(path, "rb") as handle:
            major, _ = np.lib.format.read_magic(handle)
            read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, _, dtype = read_header(handle)  # the header only
    except (OSError, ValueError) as exc:
        raise DataError(f"{path} is not a readable .npy file: {exc}") from exc
    if len(shape) != 3 or not (0 < shape[0] <= MAX_MRNET_SLICES) or not all(0 < s <= MAX_MRNET_SIDE for s in shape[1:]):
        raise DataError(f"{path}: expected an MRNet stack (slices, rows, cols) of at most {MAX_MRNET_SLICES} x "
                        f"{MAX_MRNET_SIDE} x {MAX_MRNET_SIDE}, got shape {shape}")
    if dtype.hasobject or dtype.kind not in "biuf":
        raise DataError(f"{path}: expected real numeric pixel data, got dtype {dtype}")
    # the stored bytes and their float copy during preprocessing
    limits.check_read(limits.count(shape) * (dtype.itemsize + 8), f"MRNet stack {path}")
    try:
        stack = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:  # a truncated file: shorter than its header says
        raise DataError(f"{path} is truncated or damaged: {exc}") from None
    if stack.shape != tuple(shape):
        raise DataError(f"{path} is truncated: it holds {stack.shape}, its header says {tuple(shape)}")
    return stack


@dataclass
class MRNetSummary:
    """What a built MRNet slice set holds (printed by ``genreg dataset build --format mrnet``)."""

    path: str
    num_images: int
    num_volumes: int
    size: int
    planes: tuple[str, ...]
    exams: str
    skipped_slices: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def line(self) -> str:
        text = (f"{self.num_images} slices of {self.size}x{self.size} from {self.num_volumes} MRNet volume(s) "
                f"({'/'.join(self.planes)}, exams {self.exams or 'all'}) -> {self.path}")
        if self.skipped_slices:
            text += f"; {self.skipped_slices} empty slice(s) left out"
        if self.skipped:
            text += f"; {len(self.skipped)} unreadable volume(s) skipped"
        return text


def build_mrnet_slice_set(
    mrnet_dir: str | os.PathLike,
    out_path: str | os.PathLike,
    planes=("coronal",),
    exams: str | None = None,
    slices_near_centre: int | None = None,
    size: int = IMAGE_SIZE,
    progress: bool = True,
) -> MRNetSummary:
    """Build a slice set from MRNet exams (see the module docstring). ``slices_near_centre=None`` keeps every slice
    that is not (nearly) empty; ``K`` keeps the ``K`` slices around each stack's centre."""
    import h5py
    from tqdm import tqdm

    out_path = Path(out_path)
    planes = tuple(planes)
    _check_build_arguments(slices_near_centre if slices_near_centre is not None else 1, size, out_path)
    volumes = find_mrnet_volumes(mrnet_dir, planes, exams)
    names: list[str] = []
    slice_indices: list[int] = []
    skipped: list[tuple[str, str]] = []
    empty = 0
    with atomic_path(out_path) as tmp, h5py.File(tmp, "w") as out:
        images = out.create_dataset("images", shape=(0, size, size), maxshape=(None, size, size), dtype="float32",
                                    chunks=(1, size, size))
        for volume in tqdm(volumes, desc="volumes", unit="vol", disable=not progress, file=sys.stderr):
            try:
                stack = load_mrnet_stack(volume.path)
            except DataError as exc:
                skipped.append((str(volume.path), str(exc)))
                continue
            indices = (range(stack.shape[0]) if slices_near_centre is None
                       else centre_slice_indices(stack.shape[0], slices_near_centre))
            kept, kept_indices = [], []
            for index in indices:
                try:
                    image = preprocess(stack[index], size)
                except DataError:
                    empty += 1  # a constant slice
                    continue
                if float(image.mean()) < MIN_MEAN_INTENSITY:
                    empty += 1
                    continue
                kept.append(image)
                kept_indices.append(int(index))
            if kept:
                start = images.shape[0]
                images.resize(start + len(kept), axis=0)
                images[start:] = np.stack(kept)
                names += [volume.name] * len(kept)
                slice_indices += kept_indices
        if not names:
            raise DataError(f"no usable slice in the MRNet exams below {mrnet_dir}")
        out.create_dataset("volume", data=np.array(names, dtype=object), dtype=h5py.string_dtype("utf-8"))
        out.create_dataset("slice", data=np.asarray(slice_indices, dtype=np.int32))
        out.attrs.update({
            "format": SLICE_SET_FORMAT, "version": SLICE_SET_VERSION, "size": size,
            "slices_near_centre": slices_near_centre if slices_near_centre is not None else 0,
            "acquisition": "mrnet:" + "+".join(planes), "source_dir": str(mrnet_dir), "exams": exams or "all",
            "preprocessing": f"centre crop to square, Pillow {RESAMPLE_FILTER.name} resize, linear rescale to [0, 1]",
            "terms": "MRNet research-use agreement (non-commercial); do not redistribute",
        })
    return MRNetSummary(str(out_path), len(names), len(set(names)), size, planes, exams or "", empty, skipped)
