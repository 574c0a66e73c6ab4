"""``genreg evaluate ... --save-reconstructions DIR``: the reconstructions as fastMRI-style HDF5 volumes.

Layout (one evaluation setting per ``DIR``: data, mask, sigma, seed, weights and each method's options):

* ``DIR/<method>/<volume>.h5``: dataset ``reconstruction``, ``float32 (slices, H, W)``, the reconstruction of every
  evaluated slice of the volume in slice order, clipped to [0, 1] (the image the CSV's PSNR/SSIM were computed on),
  as fastMRI's ``save_reconstructions`` writes a submission;
* ``DIR/target/<volume>.h5``: the ground truth of the same slices as ``reconstruction_esc`` and ``reconstruction_rss``
  (one dataset, two names: fastMRI's single- and multi-coil key) with the attributes fastMRI's ``evaluate.py`` and
  its data sets read: ``max``, ``norm``, ``acquisition`` (the slice set's, ``phantom`` for phantoms) and
  ``acceleration`` (image pixels / sampled k-space points, rounded to a whole number);
* in both, ``genreg_images`` (the images' indices in the data, the CSV's ``image`` column), ``genreg_slices`` (their
  slice numbers in the source volume) and attributes naming the setting (``data``, ``mask``, ``sigma``, ``seed``,
  ``weights``, and ``method`` and ``options`` for a method's files).

``<volume>`` is the source volume's file name as the slice set records it (fastMRI: ``file1000000.h5``, so
``python -m fastmri.evaluate --target-path DIR/target --predictions-path DIR/tv --challenge singlecoil`` pairs the
files), other names with every character outside ``A-Za-z0-9._-`` replaced by ``_`` and ``.h5`` added (MRNet's
``coronal/1130`` -> ``coronal_1130.h5``). Phantoms (``phantom:N[:SEED]``) form one volume named after the spec, a
slice set without sources one named after the file.

Every file is written atomically at the end of the run (by rank 0 under ``torchrun``), and holds the slices the run
selected from the volume. While the run goes, each batch's reconstructions are kept in ``DIR/.genreg-staging/``
(written before the batch's CSV rows, removed when the volumes are written), so an interrupted run resumes: rows
already in the CSV take their reconstructions from there or from the volumes of an earlier run of the same setting.
A folder holding another setting's files is refused, and so are CSV rows of this setting whose reconstructions are
in neither place (evaluate into a fresh ``--out``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ..fileio import check_output_folder

#: the folder of the ground-truth volumes (no registered method has this name)
TARGET_FOLDER = "target"
STAGING_FOLDER = ".genreg-staging"
FORMAT = "genreg-evaluate-reconstructions"


# ------------------------------------------------------------------------------------------------------- volumes
@dataclass
class Volume:
    """A source volume's evaluated slices: ``positions`` in the evaluation's selection, in slice order."""

    name: str  #: as the data record it (``file1000000.h5``, ``coronal/1130``)
    file: str  #: the file name in ``DIR/<method>/``
    positions: list[int]
    slices: list[int]


def _safe_stem(name: str) -> str:
    stem = name[:-3] if name.endswith(".h5") else name
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "volume"


def volume_file_names(names: Iterable[str]) -> dict[str, str]:
    """A file name per volume name: the name itself when it is a plain ``*.h5`` file name (fastMRI's), otherwise
    the name made safe, plus ``-<hash>`` where two names would share a file or the name is very long."""
    names = list(dict.fromkeys(names))
    stems = {name: _safe_stem(name) for name in names}
    counts: dict[str, int] = {}
    for stem in stems.values():
        counts[stem] = counts.get(stem, 0) + 1
    files = {}
    for name, stem in stems.items():
        if counts[stem] > 1 or len(stem) > 200:
            stem = f"{stem[:200]}-{hashlib.sha1(name.encode()).hexdigest()[:10]}"
        files[name] = f"{stem}.h5"
    return files


def group_volumes(spec: str, indices: Sequence[int]) -> list[Volume]:
    """The volumes of the selected images (``indices`` into the data ``spec``), sorted by file name."""
    from ..data.errors import DataError
    from .evaluate import data_name

    positions = list(range(len(indices)))
    if spec.startswith("phantom:"):
        sources = [(data_name(spec), int(i)) for i in indices]
    else:
        from ..data.dataset import load_slice_set_sources

        try:
            every = load_slice_set_sources(spec)
            sources = [every[int(i)] for i in indices]
        except DataError:  # a slice set that does not record its sources: one volume, slices numbered by index
            sources = [(Path(spec).stem, int(i)) for i in indices]
    by_name: dict[str, list[int]] = {}
    for position in positions:
        by_name.setdefault(sources[position][0], []).append(position)
    files = volume_file_names(by_name)
    volumes = []
    for name, members in by_name.items():
        members.sort(key=lambda p: (sources[p][1], int(indices[p])))
        volumes.append(Volume(name, files[name], members, [int(sources[p][1]) for p in members]))
    return sorted(volumes, key=lambda v: v.file)


def acquisition_of(spec: str) -> str:
    """The ``acquisition`` a target file records: the slice set's attribute, ``phantom`` for phantoms."""
    if spec.startswith("phantom:"):
        return "phantom"
    import h5py

    try:
        with h5py.File(spec, "r") as handle:
            value = handle.attrs.get("acquisition", "")
    except OSError:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def acceleration_of(mask: np.ndarray) -> int:
    """Image pixels per sampled k-space point, rounded (fastMRI's ``acceleration``; 0 for an empty mask)."""
    sampled = int(np.count_nonzero(mask))
    return int(round(mask.size / sampled)) if sampled else 0


# --------------------------------------------------------------------------------------------------------- checks
def check_folder(path: str | os.PathLike, what: str = "--save-reconstructions") -> Path:
    """Refuse, before any work, a folder that cannot be created or written (``ValueError``, one line; see
    :func:`genreg_viewer.fileio.check_output_folder`). A missing folder is created when the files are written."""
    return check_output_folder(path, what)


def _read_attributes(path: Path, keys: Sequence[str]) -> dict[str, Any]:
    """The attributes ``keys`` of the HDF5 file ``path`` that it has."""
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            return {key: handle.attrs[key] for key in keys if key in handle.attrs}
    except OSError as exc:
        raise ValueError(f"{path} cannot be read as HDF5 ({exc}); give another --save-reconstructions folder") \
            from None


def _files(folder: Path, suffix: str) -> list[Path]:
    """The regular files ``*suffix`` of ``folder``, without hidden ones (an atomic write's temporary) and without
    FIFOs or devices (never opened)."""
    return [p for p in folder.iterdir() if p.name.endswith(suffix) and not p.name.startswith(".") and p.is_file()]


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


# ---------------------------------------------------------------------------------------------------------- store
class ReconstructionStore:
    """The reconstructions of one evaluation setting in ``folder`` (see the module docstring).

    ``setting``: the CSV's ``data``, ``mask``, ``sigma``, ``seed`` and ``weights`` of the run; ``options``: per
    method, its ``options`` column (JSON text)."""

    def __init__(self, folder: str | os.PathLike, setting: dict[str, Any], options: dict[str, str], rank: int = 0):
        self.folder = Path(folder)
        self.setting = {key: str(setting[key]) for key in ("data", "mask", "sigma", "seed", "weights")}
        self.options = dict(options)
        self.rank = int(rank)

    # -------------------------------------------------------------------------------------------- identities
    def method_setting(self, method: str) -> dict[str, str]:
        return {**self.setting, "method": method, "options": self.options[method]}

    def _staging(self, method: str) -> Path:
        key = json.dumps(self.method_setting(method), sort_keys=True).encode()
        return self.folder / STAGING_FOLDER / hashlib.sha256(key).hexdigest()[:24]

    # ------------------------------------------------------------------------------------------------- checks
    def check(self) -> None:
        """Refuse (``ValueError``, one line) a folder that cannot be written, or whose files belong to another
        setting or to another program."""
        check_folder(self.folder)
        for sub in [TARGET_FOLDER, *self.options]:
            path = self.folder / sub
            if path.exists() and not path.is_dir():
                raise ValueError(f"--save-reconstructions: {path} is a file; it must be a folder (or absent)")
        if not self.folder.is_dir():
            return
        for subfolder in sorted(p for p in self.folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for path in sorted(_files(subfolder, ".h5")):
                attributes = _read_attributes(path, ["format", *self.setting, "method", "options"])
                if _text(attributes.get("format", "")) != FORMAT:
                    raise ValueError(f"{path} was not written by 'genreg evaluate --save-reconstructions'; give "
                                     "another folder")
                theirs = {key: _text(attributes.get(key, "")) for key in self.setting}
                if theirs != self.setting:
                    differ = ", ".join(f"{key} {theirs[key]} (not {self.setting[key]})" for key in self.setting
                                       if theirs[key] != self.setting[key])
                    raise ValueError(f"--save-reconstructions {self.folder} holds another setting's files ({path}: "
                                     f"{differ}); give a folder per setting")
                method = _text(attributes.get("method", ""))
                if method in self.options and _text(attributes.get("options", "")) != self.options[method]:
                    raise ValueError(f"--save-reconstructions {self.folder} holds {method} with options "
                                     f"{_text(attributes.get('options', ''))} (not {self.options[method]}); give a "
                                     "folder per setting")

    # ---------------------------------------------------------------------------------------------- staging
    def stage(self, method: str, indices: Sequence[int], images: np.ndarray) -> None:
        """Keep one batch's reconstructions ``(B, H, W)`` of images ``indices`` (atomically; a later file wins)."""
        from ..fileio import atomic_path

        folder = self._staging(method)
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns():020d}-r{self.rank}-{int(indices[0])}.npz"
        with atomic_path(folder / name) as tmp:
            np.savez(tmp, indices=np.asarray(indices, dtype=np.int64),
                     reconstruction=np.asarray(images, dtype=np.float32))

    def _staged_files(self, method: str) -> list[Path]:
        folder = self._staging(method)
        return sorted(_files(folder, ".npz")) if folder.is_dir() else []

    # ------------------------------------------------------------------------------------------------ reading
    def _volume_file(self, method: str, volume: Volume) -> Path:
        return self.folder / method / volume.file

    def _read_volume(self, path: Path, shape: tuple[int, int], with_arrays: bool) -> dict[int, np.ndarray | None]:
        import h5py

        from ..data.loading import check_hdf5_dataset

        try:
            with h5py.File(path, "r") as handle:
                images, data = handle.get("genreg_images"), handle.get("reconstruction")
                if not isinstance(images, h5py.Dataset) or not isinstance(data, h5py.Dataset) or images.ndim != 1 \
                        or images.dtype.kind not in "iu" or data.shape != (images.shape[0], *shape):
                    raise ValueError(f"{path} is not a reconstruction volume of this evaluation (its datasets "
                                     "'reconstruction' and 'genreg_images' do not match); give another folder")
                check_hdf5_dataset(data, "reconstruction", path)
                keys = [int(i) for i in images[...]]
                if not with_arrays:
                    return dict.fromkeys(keys)
                stack = np.asarray(data[...], dtype=np.float32)
        except OSError as exc:
            raise ValueError(f"{path} cannot be read ({exc}); give another --save-reconstructions folder") from None
        return {key: stack[j] for j, key in enumerate(keys)}

    def known(self, method: str, volumes: Sequence[Volume], shape: tuple[int, int],
              with_arrays: bool = False) -> dict[int, np.ndarray | None]:
        """The reconstructions of ``method`` there are for this setting, by image index: those in the volume files
        of ``volumes`` (written by an earlier run), then the staged batches (newer; later files win). Without
        ``with_arrays`` only the indices are read (the values are None)."""
        found: dict[int, np.ndarray | None] = {}
        for volume in volumes:
            path = self._volume_file(method, volume)
            if path.is_file():
                found.update(self._read_volume(path, shape, with_arrays))
        for path in self._staged_files(method):
            try:
                with np.load(path, allow_pickle=False) as archive:
                    indices = [int(i) for i in archive["indices"]]
                    stack = archive["reconstruction"] if with_arrays else None
            except (OSError, ValueError, KeyError) as exc:
                raise ValueError(f"staged reconstructions {path} cannot be read ({exc}); delete {path.parent} and "
                                 "evaluate into a fresh --out") from None
            if stack is not None and tuple(stack.shape) != (len(indices), *shape):
                raise ValueError(f"staged reconstructions {path} have shape {stack.shape}; delete {path.parent} and "
                                 "evaluate into a fresh --out")
            for j, index in enumerate(indices):
                found[index] = None if stack is None else np.asarray(stack[j], dtype=np.float32)
        return found

    # ------------------------------------------------------------------------------------------------ writing
    def _attributes(self, volume: Volume, extra: dict[str, Any]) -> dict[str, Any]:
        typed = {"sigma": float(self.setting["sigma"]), "seed": int(self.setting["seed"])}  # str() gives the text back
        return {"format": FORMAT, "volume": volume.name, **self.setting, **typed, **extra}

    def _write(self, path: Path, names: Sequence[str], stack: np.ndarray, volume: Volume, indices: Sequence[int],
               attributes: dict[str, Any]) -> None:
        import h5py

        from ..fileio import atomic_path

        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            with h5py.File(tmp, "w") as handle:
                dataset = handle.create_dataset(names[0], data=np.asarray(stack, dtype=np.float32))
                for name in names[1:]:
                    handle[name] = dataset  # a second name (hard link) of the same data
                handle.create_dataset("genreg_images", data=np.asarray(indices, dtype=np.int64))
                handle.create_dataset("genreg_slices", data=np.asarray(volume.slices, dtype=np.int64))
                handle.attrs.update(attributes)

    def finish(self, methods: Sequence[str], volumes: Sequence[Volume], indices: Sequence[int],
               ground_truth: np.ndarray, acquisition: str, acceleration: int) -> list[Path]:
        """Write the target and every method's volumes (``ground_truth`` ``(N, H, W)`` of the selection, whose
        indices in the data are ``indices``), then remove the methods' staged batches. Returns the files."""
        shape = (int(ground_truth.shape[-2]), int(ground_truth.shape[-1]))
        written = []
        common = {"acceleration": int(acceleration)}
        for volume in volumes:
            stack = ground_truth[volume.positions]
            attributes = self._attributes(volume, {**common, "acquisition": acquisition, "max": float(stack.max()),
                                                   "norm": float(np.linalg.norm(stack))})
            path = self.folder / TARGET_FOLDER / volume.file
            self._write(path, ["reconstruction_esc", "reconstruction_rss"], stack, volume,
                        [int(indices[p]) for p in volume.positions], attributes)
            written.append(path)
        for method in methods:
            found = self.known(method, volumes, shape, with_arrays=True)
            for volume in volumes:
                members = [int(indices[p]) for p in volume.positions]
                missing = [i for i in members if found.get(i) is None]
                if missing:
                    raise RuntimeError(f"no reconstruction of {method} for image(s) {missing[:5]} of {volume.name}")
                stack = np.stack([np.asarray(found[i]) for i in members])
                attributes = self._attributes(volume, {**common, "method": method,
                                                       "options": self.options[method]})
                path = self._volume_file(method, volume)
                self._write(path, ["reconstruction"], stack, volume, members, attributes)
                written.append(path)
            shutil.rmtree(self._staging(method), ignore_errors=True)
        try:
            (self.folder / STAGING_FOLDER).rmdir()  # when no other setting's batches are left there
        except OSError:
            pass
        return written

    def unsaved_done_rows(self, method: str, volumes: Sequence[Volume], indices: Sequence[int], done: set[int],
                          shape: tuple[int, int]) -> list[int]:
        """Image indices whose CSV row of ``method`` is done but whose reconstruction is nowhere in the folder."""
        found = self.known(method, volumes, shape)
        return [int(i) for i in indices if int(i) in done and int(i) not in found]
