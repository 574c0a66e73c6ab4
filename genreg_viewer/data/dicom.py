"""Slice sets from DICOM series: every DICOM file below a folder, grouped by ``SeriesInstanceUID``, one volume each.

:func:`find_dicom_series` reads only the headers (``stop_before_pixels``, large elements deferred) of every file
below the folder; files that are not DICOM (no ``DICM`` preamble) or hold no image (a ``DICOMDIR``, a report) are
counted and left out. The header of each image is bounded before any pixel is decoded: one sample per pixel,
``Rows x Columns`` within :data:`~genreg_viewer.data.limits.MAX_SLICE_PIXELS` and at most :data:`MAX_SIDE` a side,
at most :data:`MAX_FRAMES` frames, a file of at most :data:`MAX_FILE_BYTES`. A series' files are ordered along the
slice normal (``ImagePositionPatient`` projected on ``row x column`` of ``ImageOrientationPatient``) when every file
has them and they share one orientation (in the direction of increasing ``InstanceNumber`` where the first and
last files have one), else by ``InstanceNumber``, else by path; the frames of a multi-frame file
follow in file order. ``slice`` is the index in that order.

Pixels are decoded by pydicom (uncompressed, deflated and RLE itself); JPEG 2000 through ``pylibjpeg`` and
``pylibjpeg-openjpeg`` (dependencies of this project). Other compressed syntaxes (JPEG, JPEG-LS) need a further
pydicom decoder plugin (e.g. ``pylibjpeg-libjpeg``); without one the file is skipped with pydicom's reason.
``RescaleSlope`` and ``RescaleIntercept`` are applied and ``MONOCHROME1`` is inverted, then every slice is
preprocessed like every other format (:func:`~genreg_viewer.data.preprocess.preprocess`). Volumes are named
``dicom/<SeriesDescription>`` (``dicom/series<SeriesNumber>`` without one; a name used twice gets
``-<SeriesNumber>``). A file that cannot be read or decoded is skipped and listed in the summary.
"""

from __future__ import annotations

import os
import re
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..defaults import IMAGE_SIZE
from . import limits
from .dataset import _check_build_arguments
from .loading import centre_slice_indices
from .errors import DataError
from .preprocess import preprocess
from .writer import BuildSummary, open_slice_set_writer

#: most pixels a side of a DICOM image, and most frames of one file
MAX_SIDE = 8192
MAX_FRAMES = 4096
#: a DICOM file larger than this is not read
MAX_FILE_BYTES = limits.MAX_READ_BYTES
#: most files looked at below the folder
MAX_FILES = 200_000
#: header elements larger than this are not read while grouping (pydicom ``defer_size``)
DEFER_SIZE = 1 << 16
DEFAULT_TERMS = "those of the DICOM files' source (not recorded in the files); do not redistribute unless they allow"


@dataclass
class DicomImage:
    """The header facts of one image file that grouping and ordering need."""

    path: Path
    series_uid: str
    series_number: int | None
    description: str
    instance: int | None
    position: tuple[float, ...] | None
    orientation: tuple[float, ...] | None
    frames: int
    rows: int
    columns: int


@dataclass
class DicomSeries:
    """One series: its UID, number, description and files in slice order."""

    uid: str
    number: int | None
    description: str
    images: list[DicomImage] = field(default_factory=list)
    name: str = ""
    ordered_by: str = ""

    @property
    def num_slices(self) -> int:
        return sum(image.frames for image in self.images)


def _pydicom():
    try:
        import pydicom
    except ImportError as exc:  # a dependency of the project; missing only in a broken install
        raise DataError("reading DICOM needs pydicom (pip install pydicom pylibjpeg pylibjpeg-openjpeg)") from exc
    return pydicom


def _int_or_none(value) -> int | None:
    try:
        return int(value) if value is not None and str(value).strip() != "" else None
    except (TypeError, ValueError):
        return None


def _floats(value, count: int) -> tuple[float, ...] | None:
    try:
        numbers = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return numbers if len(numbers) == count and all(np.isfinite(numbers)) else None


def _check_header(ds, path: Path) -> tuple[int, int, int]:
    """``(frames, rows, columns)`` of an image header, refused (``DataError``) beyond the limits or when it is not
    a single-sample (grayscale) image."""
    rows, columns = _int_or_none(ds.get("Rows")), _int_or_none(ds.get("Columns"))
    frames = _int_or_none(ds.get("NumberOfFrames")) or 1
    samples = _int_or_none(ds.get("SamplesPerPixel")) or 1
    bits = _int_or_none(ds.get("BitsAllocated")) or 16
    if rows is None or columns is None or rows < 1 or columns < 1:
        raise DataError(f"{path}: no valid Rows/Columns ({ds.get('Rows')!r} x {ds.get('Columns')!r})")
    if rows > MAX_SIDE or columns > MAX_SIDE:
        raise DataError(f"{path}: an image of {rows} x {columns} exceeds the limit of {MAX_SIDE} pixels a side")
    if not 1 <= frames <= MAX_FRAMES:
        raise DataError(f"{path}: {frames} frames; at most {MAX_FRAMES} are read from one file")
    if samples != 1:
        raise DataError(f"{path}: {samples} samples per pixel (colour); only grayscale images are read")
    if bits not in (1, 8, 16, 32, 64):
        raise DataError(f"{path}: BitsAllocated {bits} is not 1, 8, 16, 32 or 64")
    limits.check_slice((rows, columns), 8, str(path))
    limits.check_read(frames * rows * columns * 8, f"{path} ({frames} frames of {rows} x {columns})")
    return frames, rows, columns


def read_dicom_header(path: Path) -> DicomImage | None:
    """The facts of one file's header, ``None`` when it is not a DICOM image (no preamble, no pixel data);
    ``DataError`` for a DICOM image that cannot be used."""
    pydicom = _pydicom()
    from pydicom.errors import InvalidDicomError

    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise DataError(f"{path}: a file of {size} bytes; at most {MAX_FILE_BYTES} are read")
    try:
        with warnings.catch_warnings():  # pydicom warns about damaged elements; what matters is checked below
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, stop_before_pixels=True, defer_size=DEFER_SIZE)
    except InvalidDicomError:
        return None
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types for damaged files
        raise DataError(f"{path}: unreadable DICOM header ({type(exc).__name__}: {exc})") from None
    try:
        if "Rows" not in ds and "Columns" not in ds:
            meta = getattr(ds, "file_meta", None)
            sop_class = meta.get("MediaStorageSOPClassUID") if meta is not None else None
            if meta is None or "TransferSyntaxUID" not in meta or "Image Storage" in getattr(sop_class, "name", ""):
                raise DataError(f"{path}: a damaged (truncated?) DICOM file: no image size in its header")
            return None  # no image: a DICOMDIR, a structured report, presentation state...
        frames, rows, columns = _check_header(ds, path)
        uid = str(ds.get("SeriesInstanceUID", "") or "").strip()
        if not uid:
            raise DataError(f"{path}: no SeriesInstanceUID; the image cannot be put in a series")
        return DicomImage(
            path, uid, _int_or_none(ds.get("SeriesNumber")), str(ds.get("SeriesDescription", "") or "").strip(),
            _int_or_none(ds.get("InstanceNumber")), _floats(ds.get("ImagePositionPatient"), 3),
            _floats(ds.get("ImageOrientationPatient"), 6), frames, rows, columns)
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - a damaged element met while reading a value
        raise DataError(f"{path}: unreadable DICOM header ({type(exc).__name__}: {exc})") from None


def _order_series(series: DicomSeries) -> None:
    images = series.images
    orientations = {image.orientation for image in images}
    if all(image.position is not None for image in images) and len(orientations) == 1 and None not in orientations:
        orientation = np.array(next(iter(orientations)))
        normal = np.cross(orientation[:3], orientation[3:])
        images.sort(key=lambda image: (float(np.dot(normal, image.position or (0.0, 0.0, 0.0))),
                                       image.instance or 0, str(image.path)))
        first, last = images[0].instance, images[-1].instance
        if first is not None and last is not None and first > last:  # the direction of the instance numbers
            images.reverse()
        series.ordered_by = "ImagePositionPatient"
    elif all(image.instance is not None for image in images):
        images.sort(key=lambda image: (image.instance, str(image.path)))
        series.ordered_by = "InstanceNumber"
    else:
        images.sort(key=lambda image: str(image.path))
        series.ordered_by = "file path"


def _series_name(series: DicomSeries) -> str:
    text = series.description or (f"series{series.number}" if series.number is not None else "series-"
                                  + series.uid.rsplit(".", 1)[-1])
    text = re.sub(r"[\s/\\]+", "_", text).strip("_") or "series"
    return "dicom/" + text


def find_dicom_series(root: str | os.PathLike, progress: bool = False) -> tuple[list[DicomSeries], int,
                                                                            list[tuple[str, str]]]:
    """The image series below ``root`` (in order of series number, then UID), the number of files that are not
    DICOM images, and ``(file, reason)`` for DICOM images that cannot be used."""
    from tqdm import tqdm

    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root} is not a folder; give the folder holding the DICOM files")
    paths = []
    for path in root.rglob("*"):
        if path.is_file():
            paths.append(path)
            if len(paths) > MAX_FILES:
                raise DataError(f"more than {MAX_FILES} files below {root}; give a smaller folder")
    if not paths:
        raise DataError(f"{root} holds no files (expected DICOM files, in any sub-folder)")
    series: dict[str, DicomSeries] = {}
    others = 0
    skipped: list[tuple[str, str]] = []
    for path in tqdm(sorted(paths), desc="headers", unit="file", disable=not progress, file=sys.stderr):
        try:
            image = read_dicom_header(path)
        except DataError as exc:
            skipped.append((str(path), str(exc)))
            continue
        if image is None:
            others += 1
            continue
        entry = series.setdefault(image.series_uid, DicomSeries(image.series_uid, image.series_number,
                                                                image.description))
        entry.images.append(image)
    if not series:
        reasons = "; ".join(f"{name}: {why}" for name, why in skipped[:3])
        raise DataError(f"no usable DICOM image below {root} ({len(paths)} file(s): {others} not DICOM images"
                        + (f", {len(skipped)} unusable: {reasons}" if skipped else "") + ")")
    ordered = sorted(series.values(), key=lambda s: (s.number if s.number is not None else sys.maxsize, s.uid))
    names: dict[str, int] = {}
    for entry in ordered:
        _order_series(entry)
        names[_series_name(entry)] = names.get(_series_name(entry), 0) + 1
    used: set[str] = set()
    for entry in ordered:
        name = _series_name(entry)
        if names[name] > 1 and entry.number is not None:
            name = f"{name}-{entry.number}"
        base, count = name, 2
        while name in used:
            name, count = f"{base}-{count}", count + 1
        entry.name = name
        used.add(name)
    return ordered, others, skipped


def read_dicom_frames(image: DicomImage) -> np.ndarray:
    """The ``(frames, rows, columns)`` float64 pixels of one file, rescaled (slope/intercept) and with
    ``MONOCHROME1`` inverted; the header is checked again before the pixels are decoded."""
    pydicom = _pydicom()
    path = image.path
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path)
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types for damaged files
        raise DataError(f"{path}: unreadable DICOM file ({type(exc).__name__}: {exc})") from None
    frames, rows, columns = _check_header(ds, path)
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise DataError(f"{path}: no pixel data")
    try:
        pixels = np.asarray(ds.pixel_array)
    except Exception as exc:  # noqa: BLE001 - missing decoder plugin, damaged codestream, inconsistent header...
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        name = getattr(syntax, "name", str(syntax))
        raise DataError(f"{path}: could not decode the pixels ({name}: {type(exc).__name__}: {exc}); compressed "
                        "DICOM needs a pydicom decoder plugin, e.g. pylibjpeg with pylibjpeg-openjpeg") from None
    pixels = pixels.reshape((1, *pixels.shape)) if pixels.ndim == 2 else pixels
    if pixels.shape != (frames, rows, columns):
        raise DataError(f"{path}: decoded pixels of shape {pixels.shape}, the header says {frames} x {rows} x "
                        f"{columns}")
    slope = _floats([ds.get("RescaleSlope", 1.0)], 1)
    intercept = _floats([ds.get("RescaleIntercept", 0.0)], 1)
    data = pixels.astype(np.float64) * (slope[0] if slope else 1.0) + (intercept[0] if intercept else 0.0)
    if str(ds.get("PhotometricInterpretation", "")).strip().upper() == "MONOCHROME1":
        data = data.max() - data
    return data


def build_dicom_slice_set(
    dicom_dir: str | os.PathLike,
    out_path: str | os.PathLike,
    slices_near_centre: int | None = None,
    size: int = IMAGE_SIZE,
    terms: str | None = None,
    progress: bool = True,
) -> BuildSummary:
    """Build a slice set from every DICOM series below ``dicom_dir`` (see the module docstring):
    ``slices_near_centre=None`` keeps every slice that is not constant, ``K`` the ``K`` around each series' centre."""
    from tqdm import tqdm

    out_path = Path(out_path)
    _check_build_arguments(slices_near_centre if slices_near_centre is not None else 1, size, out_path)
    series, others, skipped = find_dicom_series(dicom_dir, progress)
    total = sum(min(s.num_slices, slices_near_centre or s.num_slices) for s in series)
    limits.check_images(total, (size, size), f"slice set {out_path}")
    constant = 0
    notes = []
    with open_slice_set_writer(out_path, size) as writer:
        for entry in tqdm(series, desc="series", unit="series", disable=not progress, file=sys.stderr):
            wanted = set(range(entry.num_slices) if slices_near_centre is None
                         else centre_slice_indices(entry.num_slices, slices_near_centre))
            images, indices, position = [], [], 0
            for image in entry.images:
                span = range(position, position + image.frames)
                position += image.frames
                if not wanted.intersection(span):
                    continue
                try:
                    frames = read_dicom_frames(image)
                except DataError as exc:
                    skipped.append((str(image.path), str(exc)))
                    continue
                for index in span:
                    if index not in wanted:
                        continue
                    try:
                        images.append(preprocess(frames[index - span.start], size))
                        indices.append(index)
                    except DataError:
                        constant += 1
            writer.add(images, entry.name, indices)
            if images:
                notes.append(f"{entry.name}: {len(images)} of {entry.num_slices} slices "
                             f"({entry.images[0].rows}x{entry.images[0].columns}, ordered by {entry.ordered_by})")
        if not len(writer):
            reasons = "; ".join(f"{name}: {why}" for name, why in skipped[:3])
            raise DataError(f"no usable slice in the DICOM series below {dicom_dir}"
                            + (f" ({reasons})" if reasons else ""))
        volumes = list(dict.fromkeys(writer.volumes))
        writer.finish({
            "slices_near_centre": slices_near_centre or 0, "acquisition": "dicom:" + "+".join(
                v.removeprefix("dicom/") for v in volumes),
            "source_dir": str(dicom_dir), "terms": terms or DEFAULT_TERMS,
        })
        num_images = len(writer)
    if others:
        notes.append(f"{others} file(s) that are not DICOM images ignored")
    return BuildSummary(str(out_path), num_images, len(volumes), size, f"DICOM series below {dicom_dir}",
                        "dicom:" + "+".join(v.removeprefix("dicom/") for v in volumes), volumes, notes,
                        constant, skipped)
