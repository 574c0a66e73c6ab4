"""Saving and restoring sessions, and exporting results and figures.

A *bundle* is JSON metadata plus named arrays, stored in one of three forms:

* ``.npz``: the arrays, plus the metadata as the string array ``__meta__``;
* ``.h5``/``.hdf5``: one dataset per array, the metadata in the root attribute ``genreg_meta``;
* a folder (a path without suffix): ``<name>.npy`` per array and ``session.json``, written last.

Every file is written atomically (:func:`genreg_viewer.fileio.atomic_path`). Arrays: ``ground_truth``, ``mask``
(centred, boolean), ``adjoint``, and for each run ``run<id>__image`` plus its array extras
(``run<id>__std_map``, ...). A *session* bundle also stores the GUI settings so that the whole window can be
restored; a *results* bundle (``kind = "results"``) is the same without them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..fileio import atomic_path, atomic_write, atomic_write_text
from .state import ExperimentState, ImageInfo, RunRecord

FORMAT_NAME = "genreg-viewer"
FORMAT_VERSION = 1
META_KEY = "__meta__"
H5_META_ATTR = "genreg_meta"
FOLDER_META = "session.json"
SESSION_FILTER = "Session (*.npz *.h5 *.hdf5);;NumPy archive (*.npz);;HDF5 (*.h5 *.hdf5);;All files (*)"
RESULTS_FILTER = "NumPy archive (*.npz);;HDF5 (*.h5 *.hdf5)"


@dataclass
class Bundle:
    meta: dict[str, Any]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def _storage_kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return "npz"
    if suffix in (".h5", ".hdf5"):
        return "h5"
    if suffix == "" or path.is_dir():
        return "folder"
    raise ValueError(f"cannot save to {path.name}: use a .npz or .h5 file, or a folder name without a suffix")


def write_bundle(path: str | Path, bundle: Bundle) -> Path:
    """Write ``bundle`` to ``path`` (format from the suffix, see the module docstring)."""
    path = Path(path)
    kind = _storage_kind(path)
    meta = dict(bundle.meta, arrays=sorted(bundle.arrays))
    text = json.dumps(meta, default=_json_default, indent=1)
    if kind == "npz":
        with atomic_path(path) as tmp:
            np.savez_compressed(tmp, **{META_KEY: np.array(text)}, **bundle.arrays)
    elif kind == "h5":
        import h5py

        with atomic_path(path) as tmp:
            with h5py.File(tmp, "w") as f:
                f.attrs[H5_META_ATTR] = text
                for name, array in bundle.arrays.items():
                    f.create_dataset(name, data=array, compression="gzip" if array.size > 64 else None)
    else:
        path.mkdir(parents=True, exist_ok=True)
        stale = set()
        if (path / FOLDER_META).exists():
            try:
                stale = set(json.loads((path / FOLDER_META).read_text(encoding="utf-8")).get("arrays", []))
            except (ValueError, OSError):
                stale = set()
        for name, array in bundle.arrays.items():
            atomic_write(path / f"{name}.npy", lambda tmp, a=array: np.save(tmp, a))
        atomic_write_text(path / FOLDER_META, text)
        for name in stale - set(bundle.arrays):
            (path / f"{name}.npy").unlink(missing_ok=True)
    return path


def read_bundle(path: str | Path) -> Bundle:
    """Read a bundle written by :func:`write_bundle` (``ValueError`` when ``path`` is not one)."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"no such file or folder: {path}")
    try:
        if path.is_dir():
            meta_file = path / FOLDER_META
            if not meta_file.exists():
                raise ValueError(f"{path} is not a genreg-viewer session folder (no {FOLDER_META})")
            meta = json.loads(meta_file.read_text(encoding="utf-8"))
            arrays = {name: np.load(path / f"{name}.npy", allow_pickle=False) for name in meta.get("arrays", [])}
        elif path.suffix.lower() == ".npz":
            with np.load(path, allow_pickle=False) as data:
                if META_KEY not in data.files:
                    raise ValueError(f"{path.name} is not a genreg-viewer session or results file")
                meta = json.loads(str(data[META_KEY]))
                arrays = {name: data[name] for name in data.files if name != META_KEY}
        elif path.suffix.lower() in (".h5", ".hdf5"):
            import h5py

            with h5py.File(path, "r") as f:
                if H5_META_ATTR not in f.attrs:
                    raise ValueError(f"{path.name} is not a genreg-viewer session or results file")
                meta = json.loads(f.attrs[H5_META_ATTR])
                arrays = {name: f[name][()] for name in f.keys()}
        else:
            raise ValueError(f"{path.name} is not a session: use a .npz/.h5 file or a session folder")
    except ValueError:
        raise
    except Exception as exc:  # corrupt zip/HDF5, unreadable file
        raise ValueError(f"could not read {path.name}: {exc}") from exc
    if meta.get("format") != FORMAT_NAME:
        raise ValueError(f"{path.name} is not a genreg-viewer session or results file")
    return Bundle(meta, arrays)


def is_bundle(path: str | Path) -> bool:
    """Whether ``path`` looks like a session or results bundle (cheap check, no arrays are read)."""
    path = Path(path)
    try:
        if path.is_dir():
            return (path / FOLDER_META).exists()
        if path.suffix.lower() == ".npz":
            with np.load(path, allow_pickle=False) as data:
                return META_KEY in data.files
        if path.suffix.lower() in (".h5", ".hdf5"):
            import h5py

            with h5py.File(path, "r") as f:
                return H5_META_ATTR in f.attrs
    except Exception:
        return False
    return False


# ----------------------------------------------------------------- state <-> bundle
def _run_meta(record: RunRecord) -> dict[str, Any]:
    return {
        "run_id": record.run_id,
        "method": record.method,
        "title": record.title,
        "params": record.params,
        "iterations": record.iterations,
        "seconds": record.seconds,
        "device": record.device,
        "psnr": record.psnr,
        "ssim": record.ssim,
        "cancelled": record.cancelled,
        "setting": record.setting,
        "info": record.info,
        "history": record.history,
        "extras": sorted(record.arrays),
    }


def make_bundle(state: ExperimentState, kind: str = "session", gui: dict[str, Any] | None = None) -> Bundle:
    """The image, mask, measurement setting and runs of ``state`` (``kind``: ``session`` or ``results``)."""
    if state.image is None:
        raise ValueError("there is nothing to save: open an image first")
    arrays: dict[str, np.ndarray] = {"ground_truth": state.image, "mask": state.mask}
    if state.adjoint is not None:
        arrays["adjoint"] = state.adjoint
    for record in state.results:
        arrays[f"run{record.run_id}__image"] = record.image
        for name, array in record.arrays.items():
            arrays[f"run{record.run_id}__{name}"] = array
    meta = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "kind": kind,
        "image_info": asdict(state.image_info),
        "mask_spec": state.mask_spec,
        "sigma": state.sigma,
        "seed": state.seed,
        "runs": [_run_meta(r) for r in state.results],
    }
    if gui is not None:
        meta["gui"] = gui
    return Bundle(meta, arrays)


def restore_bundle(bundle: Bundle, state: ExperimentState) -> dict[str, Any]:
    """Load the image, mask, noise and runs of ``bundle`` into ``state``; return its GUI settings."""
    meta, arrays = bundle.meta, bundle.arrays
    if "ground_truth" not in arrays or "mask" not in arrays:
        raise ValueError("the session has no ground truth image or mask")
    records = []
    for run in meta.get("runs", []):
        prefix = f"run{run['run_id']}__"
        if f"{prefix}image" not in arrays:
            raise ValueError(f"the session lacks the image of run {run['run_id']}")
        records.append(RunRecord(
            run_id=int(run["run_id"]), method=run["method"], title=run["title"],
            image=np.asarray(arrays[f"{prefix}image"], dtype=np.float32), params=run.get("params", {}),
            iterations=int(run.get("iterations", 0)), seconds=float(run.get("seconds", 0.0)),
            device=run.get("device", ""), psnr=run.get("psnr"), ssim=run.get("ssim"),
            cancelled=bool(run.get("cancelled", False)), setting=run.get("setting", {}),
            arrays={name: arrays[prefix + name] for name in run.get("extras", []) if prefix + name in arrays},
            info=run.get("info", {}), history=run.get("history", []),
        ))
    info_fields = meta.get("image_info", {})
    info = ImageInfo(**{k: v for k, v in info_fields.items() if k in ImageInfo.__dataclass_fields__})
    state.set_image(np.asarray(arrays["ground_truth"], dtype=np.float32), info)
    state.set_noise(float(meta.get("sigma", 0.0)), int(meta.get("seed", 0)))
    state.set_mask(np.asarray(arrays["mask"]).astype(bool), meta.get("mask_spec", "custom"))
    for record in records:
        state.add_result(record)
    return meta.get("gui", {})


def save_session(path: str | Path, state: ExperimentState, gui: dict[str, Any] | None = None) -> Path:
    return write_bundle(path, make_bundle(state, "session", gui or {}))


def export_results(path: str | Path, state: ExperimentState) -> Path:
    """Write the ground truth, mask, adjoint and every run's image and metrics to ``.npz``/``.h5``."""
    if Path(path).suffix.lower() not in (".npz", ".h5", ".hdf5"):
        raise ValueError(f"cannot export results to {Path(path).name}: use a .npz or .h5 file")
    return write_bundle(path, make_bundle(state, "results"))


def load_session(path: str | Path, state: ExperimentState) -> dict[str, Any]:
    return restore_bundle(read_bundle(path), state)


def save_widget_png(widget, path: str | Path) -> Path:
    """Render ``widget`` as shown (at the screen's device pixel ratio) into a PNG at ``path``, atomically."""
    pixmap = widget.grab()
    with atomic_path(path, suffix=".png") as tmp:
        if not pixmap.save(str(tmp), "PNG"):
            raise OSError(f"could not write {path}")
    return Path(path)
