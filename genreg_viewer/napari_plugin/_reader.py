"""napari reader: fastMRI ``.h5`` volumes, slice sets and genreg-viewer session/results bundles as layers.

No Qt and no napari import: the reader only returns napari's ``LayerData`` tuples ``(data, kwargs, "image")``, built
with the project's own loaders (:func:`~genreg_viewer.data.loading.load_volume_slices`,
:func:`~genreg_viewer.data.dataset.load_slice_set`, :func:`~genreg_viewer.application.bundles.read_bundle` and
:func:`~genreg_viewer.application.session_schema.check_bundle`), so a file opens in napari exactly as the app and the
CLI read it.

* a fastMRI volume (``reconstruction_esc``/``reconstruction_rss``, or only ``kspace``) is one ``(slices, 128, 128)``
  layer: every slice preprocessed as the app and ``genreg recon`` do (centre crop, resize, scaled to [0, 1]);
* a slice set (``genreg dataset build``) is one ``(N, H, W)`` layer of its stored images;
* a bundle (``genreg recon --out``, the app's *Export results* / *Save session*) gives the ground truth, the
  adjoint, and per run its image and, where the run has one, its posterior std map as a further layer. A run's
  layer carries its :class:`~genreg_viewer.application.runs.RunRecord` in ``metadata["genreg_run"]`` (the
  covariance inspector uses a mean+covar run's own latent).

:func:`napari_get_reader` returns None for a path it does not claim (an HDF5 file with none of these layouts, an
``.npz`` or folder that is not a bundle); for a claimed file that turns out unreadable (a truncated ``.h5``, a
bundle with missing arrays) the returned reader raises the loader's one-line error (``DataError`` or
``SessionError``, both ``ValueError``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..application.bundles import H5_META_ATTR, SessionError, is_bundle, read_bundle
from ..application.session_schema import check_bundle
from ..application.experiment import IMAGE_SIZE
from ..application.runs import RunRecord
from ..data.dataset import load_slice_set, load_slice_set_sources
from ..data.loading import HDF5_SUFFIXES, KNOWN_HDF5_IMAGE_KEYS, SLICE_SET_FORMAT, load_volume_slices
from ..data.errors import DataError

LayerData = tuple[Any, dict[str, Any], str]
ReaderFunction = Callable[[Any], list[LayerData]]

#: colour map of posterior standard-deviation layers (sequential, dark = certain)
STD_COLORMAP = "magma"


def _hdf5_kind(path: Path) -> str | None:
    """``"bundle"``, ``"slice-set"``, ``"volume"``, ``"unreadable"`` (claimed by its suffix, but not an HDF5 file
    h5py can open: truncated or corrupt) or None (an HDF5 file of another layout: not ours)."""
    import h5py

    try:
        if not h5py.is_hdf5(path):
            return "unreadable"
        with h5py.File(path, "r") as h5file:
            if H5_META_ATTR in h5file.attrs:
                return "bundle"
            fmt = h5file.attrs.get("format")
            if isinstance(fmt, bytes):
                fmt = fmt.decode("utf-8", "replace")
            if fmt == SLICE_SET_FORMAT:
                return "slice-set"
            if any(key in h5file for key in KNOWN_HDF5_IMAGE_KEYS):
                return "volume"
            return None
    except OSError:
        return "unreadable"


def _kind(path: str | os.PathLike) -> str | None:
    """What :func:`napari_get_reader` makes of one path (see :func:`_hdf5_kind`)."""
    path = Path(path)
    if path.is_dir():
        return "bundle" if is_bundle(path) else None
    if not path.is_file():
        return None
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return "bundle" if is_bundle(path) else None
    if suffix in HDF5_SUFFIXES:
        return _hdf5_kind(path)
    return None


def napari_get_reader(path: str | os.PathLike | list) -> ReaderFunction | None:
    """napari's reader hook: a function that reads ``path`` (or every path of a list) into layers, or None when
    any of them is not a file this plugin reads."""
    paths = list(path) if isinstance(path, (list, tuple)) else [path]
    if not paths or any(_kind(p) is None for p in paths):
        return None
    return read_paths


def read_paths(path: str | os.PathLike | list) -> list[LayerData]:
    """The layers of ``path`` (or of every path of a list, in order)."""
    paths = list(path) if isinstance(path, (list, tuple)) else [path]
    layers: list[LayerData] = []
    for one in paths:
        layers += read_path(one)
    return layers


def read_path(path: str | os.PathLike) -> list[LayerData]:
    """The layers of one file or bundle folder; a file this reader cannot use raises ``DataError`` /
    ``SessionError`` (``ValueError``) with the loader's message."""
    kind = _kind(path)
    if kind == "bundle":
        return read_bundle_layers(path)
    if kind == "slice-set":
        return read_slice_set_layers(path)
    if kind in ("volume", "unreadable"):  # the loader says what is wrong with an unreadable file
        return read_volume_layers(path)
    raise DataError(f"{path} is not a fastMRI volume, slice set or genreg-viewer bundle")


def read_volume_layers(path: str | os.PathLike, size: int = IMAGE_SIZE) -> list[LayerData]:
    """A fastMRI volume (or any HDF5/NumPy stack the loader reads) as one ``(slices, size, size)`` layer."""
    loaded = load_volume_slices(path, size=size)
    stack = np.stack([item.image for item in loaded])
    first = loaded[0]
    metadata = {"genreg": {"kind": "volume", "path": str(path), "key": first.meta.get("key"),
                           "slice_indices": [item.slice_index for item in loaded], "meta": first.meta}}
    return [(stack, {"name": Path(path).stem, "contrast_limits": (0.0, 1.0), "metadata": metadata}, "image")]


def read_slice_set_layers(path: str | os.PathLike) -> list[LayerData]:
    """A slice set as one ``(N, H, W)`` layer; ``metadata["genreg"]["sources"]`` lists ``(volume, slice)`` of
    each image."""
    images = load_slice_set(path)
    sources = load_slice_set_sources(path)
    metadata = {"genreg": {"kind": "slice-set", "path": str(path), "sources": sources}}
    return [(images, {"name": Path(path).stem, "contrast_limits": (0.0, 1.0), "metadata": metadata}, "image")]


def run_metadata(record: RunRecord, **common: Any) -> dict[str, Any]:
    """A run layer's ``metadata["genreg"]``: what the run was (method, parameters, scores, setting)."""
    return {**common, "role": "run", "run_id": record.run_id, "method": record.method, "params": record.params,
            "psnr": record.psnr, "ssim": record.ssim, "iterations": record.iterations, "setting": record.setting}


def std_layer_kwargs(name: str, std: np.ndarray, metadata: dict[str, Any]) -> dict[str, Any]:
    """A posterior std map's layer: :data:`STD_COLORMAP` from 0 to its maximum, hidden at first (it would cover the
    run's image; tick it in the layer list)."""
    high = float(np.max(std)) if std.size else 0.0
    return {"name": name, "colormap": STD_COLORMAP, "contrast_limits": (0.0, high if high > 0 else 1.0),
            "metadata": metadata, "visible": False}


def read_bundle_layers(path: str | os.PathLike) -> list[LayerData]:
    """A session or results bundle: ground truth, adjoint, and per run its image and std map (checked as the app
    checks a session it opens); results from measured k-space (no ground truth) give each 2-D array a layer."""
    bundle = read_bundle(Path(path))
    stem = Path(path).name if Path(path).is_dir() else Path(path).stem
    common = {"kind": "bundle", "path": str(path), "mask_spec": bundle.meta.get("mask_spec"),
              "sigma": bundle.meta.get("sigma"), "seed": bundle.meta.get("seed")}
    if "ground_truth" not in bundle.arrays:
        return _measured_bundle_layers(bundle.arrays, stem, common)
    contents = check_bundle(bundle)  # SessionError naming the first bad field
    layers: list[LayerData] = [
        (contents.image, {"name": f"{stem}: ground truth", "contrast_limits": (0.0, 1.0),
                          "metadata": {"genreg": {**common, "role": "ground_truth", "source": contents.info.source}}},
         "image"),
    ]
    adjoint = bundle.arrays.get("adjoint")
    if adjoint is not None and adjoint.ndim == 2 and np.isfinite(adjoint).all():
        layers.append((np.asarray(adjoint, np.float32),
                       {"name": f"{stem}: adjoint", "contrast_limits": (0.0, 1.0), "visible": False,
                        "metadata": {"genreg": {**common, "role": "adjoint"}}}, "image"))
    for record in contents.records:
        label = f"{stem}: {record.label()}"
        run_meta = run_metadata(record, **common)
        layers.append((record.image, {"name": label, "contrast_limits": (0.0, 1.0),
                                      "metadata": {"genreg": run_meta, "genreg_run": record}}, "image"))
        std = record.arrays.get("std_map")
        if std is not None:
            layers.append((std, std_layer_kwargs(f"{label} std", std, {"genreg": {**run_meta, "role": "std_map"}}),
                           "image"))
    return layers


def _measured_bundle_layers(arrays: dict[str, np.ndarray], stem: str, common: dict[str, Any]) -> list[LayerData]:
    layers: list[LayerData] = []
    for name, array in sorted(arrays.items()):
        if array.ndim != 2 or array.dtype.kind not in "biuf" or name == "mask":
            continue
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise SessionError(f"{stem}: the array {name!r} contains NaN or infinite values")
        metadata = {"genreg": {**common, "role": name}}
        if name.endswith("__std_map"):
            layers.append((array, std_layer_kwargs(f"{stem}: {name}", array, metadata), "image"))
        else:
            layers.append((array, {"name": f"{stem}: {name}", "metadata": metadata}, "image"))
    if not layers:
        raise SessionError(f"{stem} holds no 2-D image")
    return layers
