"""Slice sets from the knees shipped with RefineGAN (Quan et al. 2018, ``tmquan/RefineGAN``, ``data/knees``).

The data are sagittal 3-D FSE proton-density knees from mridata.org: ``{db_train,db_valid}/N.tif``, each TIFF two
``float32 256 x 256`` frames (real and imaginary part of one slice), 200 files = 20 subjects x 10 slices, shuffled,
and the two folders share subjects. The file names do not say which subject a slice belongs to, so
:func:`cluster_subjects` recovers it: each magnitude image is mean-pooled 4x, made zero-mean and unit-norm, the
distance between two slices is ``1 - correlation``, and single-linkage and average-linkage clustering
(:mod:`scipy.cluster.hierarchy`) are each cut into ``files / slices_per_subject`` clusters. The build goes on only
when both give the same partition into clusters of exactly ``slices_per_subject`` files; on the real data both
give 20 clusters of 10 (and so do full-resolution, 2x and 8x pooled features, and weighted and Ward linkage).

Subjects are numbered 0, 1, ... by their smallest ``(folder, file number)``, so the numbering is deterministic and
``subjects="0-13"`` / ``"14-15"`` / ``"16-19"`` give disjoint train/validation/test splits by subject. Each slice is
preprocessed like every other format (:func:`~genreg_viewer.data.preprocess.preprocess` of the magnitude); the
volume name is ``refinegan/subjectNN``, ``slice`` is the slice's rank within its subject in ``(folder, file
number)`` order (not an anatomical position: the files do not record it) and the extra dataset ``file`` holds
``folder/N.tif``. The data are for research purposes only, not for commercialization: use them locally, never
commit them or images made from them.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..defaults import IMAGE_SIZE
from . import limits
from .dataset import _check_build_arguments
from .mrnet import _in_ranges, parse_exam_ranges
from .errors import DataError
from .preprocess import MIN_SIDE, preprocess
from .writer import BuildSummary, open_slice_set_writer

ACQUISITION = "refinegan:sagittal-fse-pd"
TERMS = "research purposes only, not for commercialization (mridata.org / RefineGAN)"
DEFAULT_SLICES_PER_SUBJECT = 10
#: the mean-pooling factor of the clustering features
POOL = 4
#: RefineGAN slices are 256 x 256; far larger ones are not these knees and are refused from the header
MAX_SIDE = 1024
#: most files clustered at once (the distance matrix grows with the square)
MAX_FILES = 4096


@dataclass(frozen=True)
class RefineGANFile:
    """One slice file: its folder relative to the root (``db_train``), number and path."""

    folder: str
    number: int
    path: Path

    @property
    def name(self) -> str:
        return f"{self.folder}/{self.number}.tif" if self.folder else f"{self.number}.tif"


def find_refinegan_files(root: str | os.PathLike) -> list[RefineGANFile]:
    """Every ``N.tif`` below ``root`` (any folder depth), sorted by (folder, number)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root} is not a folder; give the folder holding RefineGAN's db_train and db_valid folders")
    found = []
    for path in root.rglob("*.tif"):
        if path.stem.isdigit() and path.is_file():
            folder = path.parent.relative_to(root).as_posix()
            found.append(RefineGANFile("" if folder == "." else folder, int(path.stem), path))
    if not found:
        raise DataError(f"no RefineGAN slices (TIFF files named by number, e.g. db_train/1.tif) below {root}")
    if len(found) > MAX_FILES:
        raise DataError(f"{len(found)} numbered TIFF files below {root}; at most {MAX_FILES} are clustered at once")
    return sorted(found, key=lambda f: (f.folder, f.number))


def read_refinegan_slice(path: str | os.PathLike) -> np.ndarray:
    """The complex ``(H, W)`` slice of one file: two float32 frames, real then imaginary part. The header (mode,
    size, frame count) is checked before any pixel is decoded."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with warnings.catch_warnings(), contextlib.ExitStack() as stack:
            warnings.simplefilter("ignore")  # Pillow warns about damaged tags; what matters is checked below
            image = stack.enter_context(Image.open(path))  # the header only
            if image.mode != "F":
                raise DataError(f"{path}: expected 32-bit float frames (real, imaginary), got Pillow mode "
                                f"{image.mode!r}")
            width, height = image.size
            if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
                raise DataError(f"{path}: frames of {width} x {height}; RefineGAN slices are 256 x 256 (each side "
                                f"between {MIN_SIDE} and {MAX_SIDE} accepted)")
            limits.check_slice((2, height, width), 4, str(path))
            frames = int(getattr(image, "n_frames", 1))
            if frames != 2:
                raise DataError(f"{path}: {frames} frame(s); a RefineGAN slice has 2 (real and imaginary part)")
            parts = []
            for index in range(2):
                image.seek(index)
                if image.mode != "F" or image.size != (width, height):
                    raise DataError(f"{path}: frame {index} is {image.mode} {image.size[0]} x {image.size[1]}, "
                                    f"unlike frame 0 (F {width} x {height})")
                parts.append(np.asarray(image, dtype=np.float64))
    except DataError:
        raise
    except Image.DecompressionBombError as exc:  # Pillow's own header check, far above MAX_SIDE
        raise DataError(f"{path} is too large for a RefineGAN slice (256 x 256): {str(exc).rstrip('.')}") from None
    except (UnidentifiedImageError, OSError, EOFError, SyntaxError, ValueError) as exc:
        raise DataError(f"could not read {path}: corrupt or not a TIFF image ({exc})") from exc
    if parts[0].shape != (height, width):
        raise DataError(f"{path}: decoded frames of {parts[0].shape}, the header said {height} x {width}")
    data = parts[0] + 1j * parts[1]
    if not np.isfinite(data).all():
        raise DataError(f"{path} contains NaN or infinite values")
    return data


def clustering_features(magnitude: np.ndarray, pool: int = POOL) -> np.ndarray:
    """The magnitude mean-pooled ``pool`` x ``pool`` (cropped to a multiple of ``pool``), zero-mean and unit-norm."""
    rows, cols = (n // pool * pool for n in magnitude.shape)
    pooled = magnitude[:rows, :cols].reshape(rows // pool, pool, cols // pool, pool).mean(axis=(1, 3)).ravel()
    pooled = pooled - pooled.mean()
    norm = float(np.linalg.norm(pooled))
    if not norm > 0:
        raise DataError("a constant slice cannot be assigned to a subject")
    return pooled / norm


@dataclass
class Clustering:
    """Subjects recovered from slice features: ``labels[i]`` is file ``i``'s subject (0 = the subject of file 0)."""

    labels: np.ndarray
    #: largest single-linkage merge inside a subject and smallest distance between two subjects' slices
    within: float
    between: float


def _partition(labels: np.ndarray) -> frozenset:
    return frozenset(frozenset(np.flatnonzero(labels == c).tolist()) for c in np.unique(labels))


def cluster_subjects(features: np.ndarray, slices_per_subject: int) -> Clustering:
    """Group ``features`` (one unit-norm row per file, in (folder, number) order) into subjects of exactly
    ``slices_per_subject`` (see the module docstring); subjects are numbered by their first file. Raises
    :class:`DataError` when the files do not split into whole, equal subjects the same way under single and average
    linkage."""
    from scipy.cluster.hierarchy import fcluster, linkage

    count = len(features)
    if isinstance(slices_per_subject, bool) or not isinstance(slices_per_subject, (int, np.integer)) \
            or slices_per_subject < 1:
        raise DataError(f"--slices-per-subject must be a positive integer, got {slices_per_subject!r}")
    if count % slices_per_subject or count < 2 * slices_per_subject:
        raise DataError(f"{count} slice files do not make whole subjects of {slices_per_subject} slices (at least "
                        f"two needed); RefineGAN's knees are 200 files = 20 subjects x 10, or set "
                        "--slices-per-subject")
    subjects = count // slices_per_subject
    distances = np.clip(1.0 - (features @ features.T), 0.0, 2.0)  # 1 - correlation (rows are zero-mean, unit-norm)
    np.fill_diagonal(distances, 0.0)
    condensed = distances[np.triu_indices(count, 1)]  # = pdist(features, "correlation") for such rows
    found, trees = {}, {}
    for method in ("single", "average"):
        tree = trees[method] = linkage(condensed, method)
        labels = fcluster(tree, subjects, "maxclust")
        sizes = sorted(np.bincount(labels)[1:].tolist(), reverse=True)
        if len(sizes) != subjects or set(sizes) != {slices_per_subject}:
            raise DataError(f"the {count} slices do not cluster into {subjects} subjects of {slices_per_subject}: "
                            f"{method} linkage gives clusters of {', '.join(map(str, sizes))} slices. Check the "
                            "folder holds RefineGAN's knees only (each slice once), or set --slices-per-subject")
        found[method] = labels
    if _partition(found["single"]) != _partition(found["average"]):
        raise DataError(f"single and average linkage split the {count} slices into different subjects of "
                        f"{slices_per_subject}; the subjects cannot be recovered reliably")
    raw = found["single"]
    first_seen = {label: rank for rank, label in enumerate(dict.fromkeys(raw.tolist()))}
    labels = np.array([first_seen[label] for label in raw.tolist()], dtype=np.int64)
    same = labels[:, None] == labels[None, :]
    within = float(trees["single"][-subjects, 2])  # the last merge inside a subject
    between = float(distances[~same].min())
    return Clustering(labels, within, between)


def build_refinegan_slice_set(
    refinegan_dir: str | os.PathLike,
    out_path: str | os.PathLike,
    subjects: str | None = None,
    slices_per_subject: int = DEFAULT_SLICES_PER_SUBJECT,
    size: int = IMAGE_SIZE,
    progress: bool = True,
) -> BuildSummary:
    """Build a slice set from RefineGAN's knees (see the module docstring): every slice of the subjects in
    ``subjects`` (ranges as for MRNet exams, e.g. ``"0-13"``; ``None`` keeps all)."""
    from tqdm import tqdm

    out_path = Path(out_path)
    _check_build_arguments(1, size, out_path)
    ranges = parse_exam_ranges(subjects)
    files = find_refinegan_files(refinegan_dir)
    shapes: dict[tuple[int, int], str] = {}
    features = []
    for item in tqdm(files, desc="clustering", unit="file", disable=not progress, file=sys.stderr):
        data = read_refinegan_slice(item.path)
        shapes.setdefault(data.shape, item.name)
        if len(shapes) > 1:
            (first, name), (other, _) = list(shapes.items())[:2]
            raise DataError(f"slices of different sizes: {name} is {first[0]} x {first[1]}, {item.name} is "
                            f"{other[0]} x {other[1]}; every RefineGAN slice is 256 x 256")
        try:
            features.append(clustering_features(np.abs(data)))
        except DataError as exc:
            raise DataError(f"{item.path}: {exc}") from None
    clustering = cluster_subjects(np.stack(features), slices_per_subject)
    count = int(clustering.labels.max()) + 1
    chosen = [s for s in range(count) if _in_ranges(s, ranges)]
    if not chosen:
        raise DataError(f"no subject in {subjects!r}: the files hold subjects 0-{count - 1}")
    limits.check_images(len(chosen) * slices_per_subject, (size, size), f"slice set {out_path}")
    with open_slice_set_writer(out_path, size) as writer:
        for subject in tqdm(chosen, desc="subjects", unit="subj", disable=not progress, file=sys.stderr):
            members = [files[i] for i in np.flatnonzero(clustering.labels == subject)]
            images = [preprocess(read_refinegan_slice(item.path), size) for item in members]
            writer.add(images, f"refinegan/subject{subject:02d}", range(len(members)),
                       file=[item.name for item in members])
        writer.finish({
            "slices_near_centre": 0, "acquisition": ACQUISITION, "source_dir": str(refinegan_dir),
            "subjects": subjects or "all", "slices_per_subject": slices_per_subject,
            "clustering": (f"{POOL}x mean-pooled magnitudes, 1 - correlation, single and average linkage agree; "
                           f"largest merge within a subject {clustering.within:.4f}, smallest distance between "
                           f"subjects {clustering.between:.4f}"),
            "terms": TERMS,
        })
        volumes = list(dict.fromkeys(writer.volumes))
        num_images = len(writer)
    return BuildSummary(
        str(out_path), num_images, len(volumes), size,
        f"RefineGAN knees, subjects {subjects or 'all'} of 0-{count - 1}", ACQUISITION, volumes,
        notes=[f"{count} subjects of {slices_per_subject} slices recovered from {len(files)} files (single and "
               "average linkage agree)"],
    )
