"""``genreg dataset merge``: concatenate slice sets of one image size into one, so training can use several sources.

Every input must be a slice set (attribute ``format = "genreg-slice-set"``, datasets ``images (N, S, S)``,
``volume`` and ``slice`` of ``N`` entries, data inside the file) and all must have the same image size. Images are
copied in input order, a few hundred at a time, and checked to be finite and in [0, 1]. A volume name found in
more than one input is prefixed by its file's stem (``mrnet_coronal_train/coronal/0001``), so volumes stay
distinct (training holds out whole volumes). The merged file records its inputs in the attribute ``sources``
(JSON: file, images, volumes, acquisition, terms of each), ``acquisition`` joins the inputs' acquisitions with
``+`` and ``terms`` every input's terms of use (distinct ones joined with `` | ``).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np

from . import limits
from .loading import SLICE_SET_FORMAT, check_hdf5_dataset, json_safe
from .errors import DataError
from .writer import BuildSummary, check_out_path, open_slice_set_writer

#: images copied at once
COPY_CHUNK = 256


def _attribute_text(h5file, name: str) -> str:
    value = h5file.attrs.get(name, "")
    value = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return str(json_safe(value))


def _open_input(path: Path):
    """An open slice set, checked: format attribute, 3-D float images, matching volume/slice datasets."""
    import h5py

    if not path.is_file():
        raise DataError(f"slice set not found: {path}")
    if not h5py.is_hdf5(path):
        raise DataError(f"{path} is not an HDF5 file (expected a slice set from 'genreg dataset build')")
    try:
        h5file = h5py.File(path, "r")
    except OSError as exc:
        raise DataError(f"could not open slice set {path}: {exc}") from exc
    try:
        if _attribute_text(h5file, "format") != SLICE_SET_FORMAT:
            raise DataError(f"{path} is not a slice set (no attribute format = {SLICE_SET_FORMAT!r}; build one with "
                            "'genreg dataset build')")
        items = {}
        for name in ("images", "volume", "slice"):
            dataset = h5file.get(name)
            if not isinstance(dataset, h5py.Dataset):
                raise DataError(f"slice set {path} has no dataset {name!r}")
            check_hdf5_dataset(dataset, name, path)
            items[name] = dataset
        images = items["images"]
        if images.ndim != 3 or images.dtype.kind != "f" or images.shape[1] != images.shape[2]:
            raise DataError(f"slice set {path}: 'images' is {images.shape} {images.dtype}, expected float "
                            "(N, size, size)")
        count = images.shape[0]
        if items["volume"].shape != (count,) or items["slice"].shape != (count,):
            raise DataError(f"slice set {path}: 'volume' {items['volume'].shape} and 'slice' "
                            f"{items['slice'].shape} do not match {count} images")
        if items["volume"].dtype.kind not in "OSU" or items["slice"].dtype.kind not in "iu":
            raise DataError(f"slice set {path}: 'volume' must hold strings and 'slice' integers")
        limits.check_read(count * 64, f"the volume names of {path}")
    except BaseException:
        h5file.close()
        raise
    return h5file


def _labels(paths: Sequence[Path]) -> list[str]:
    """A distinct prefix per input: its stem, numbered when stems repeat."""
    counts = Counter(path.stem for path in paths)
    seen: Counter = Counter()
    labels = []
    for path in paths:
        seen[path.stem] += 1
        labels.append(path.stem if counts[path.stem] == 1 else f"{path.stem}-{seen[path.stem]}")
    return labels


def merge_slice_sets(out_path: str | os.PathLike, inputs: Sequence[str | os.PathLike]) -> BuildSummary:
    """Write the slice sets ``inputs`` (at least two, one image size) into one at ``out_path`` (see the module
    docstring); ``DataError`` for a missing, non-slice-set or differently sized input, before anything is written."""
    paths = [Path(p) for p in inputs]
    if len(paths) < 2:
        raise DataError("merging needs at least two slice sets: genreg dataset merge OUT.h5 IN1.h5 IN2.h5 ...")
    out_path = check_out_path(out_path, paths)
    if out_path.suffix.lower() not in (".h5", ".hdf5"):
        raise DataError(f"the merged slice set is an HDF5 file; name it with .h5, got {out_path}")
    resolved = [p.resolve() for p in paths]
    repeated = [str(p) for p, r in zip(paths, resolved) if resolved.count(r) > 1]
    if repeated:
        raise DataError(f"{repeated[0]} is given more than once; each slice set is merged once")
    files = []
    try:
        for path in paths:
            files.append(_open_input(path))
        sizes = {path: tuple(f["images"].shape[1:]) for path, f in zip(paths, files)}
        if len(set(sizes.values())) > 1:
            listing = ", ".join(f"{p.name} {s[0]}x{s[1]}" for p, s in sizes.items())
            raise DataError(f"the slice sets have different image sizes ({listing}); rebuild them with one --size")
        size = next(iter(sizes.values()))[0]
        total = sum(f["images"].shape[0] for f in files)
        limits.check_images(total, (size, size), f"merged slice set {out_path}")
        names = [list(dict.fromkeys(f["volume"].asstr()[...].tolist())) for f in files]
        owners = Counter(name for found in names for name in found)
        labels = _labels(paths)
        sources: list[dict] = []
        acquisitions, terms, preprocessing = [], [], []
        with open_slice_set_writer(out_path, size) as writer:
            for path, label, h5file in zip(paths, labels, files):
                images, volume, slices = h5file["images"], h5file["volume"].asstr(), h5file["slice"]
                for start in range(0, images.shape[0], COPY_CHUNK):
                    stop = min(start + COPY_CHUNK, images.shape[0])
                    block = np.asarray(images[start:stop], dtype=np.float32)
                    if not np.isfinite(block).all() or block.min() < 0 or block.max() > 1:
                        raise DataError(f"slice set {path} holds values outside [0, 1] (images {start}-{stop - 1})")
                    block_names = [n if owners[n] == 1 else f"{label}/{n}" for n in volume[start:stop].tolist()]
                    for name in dict.fromkeys(block_names):
                        rows = [i for i, n in enumerate(block_names) if n == name]
                        writer.add(block[rows], name, slices[start:stop][rows].tolist())
                acquisition = _attribute_text(h5file, "acquisition") or "unknown"
                term = _attribute_text(h5file, "terms")
                sources.append({"file": path.name, "path": str(path), "images": int(images.shape[0]),
                                "volumes": len(names[len(sources)]), "acquisition": acquisition, "terms": term,
                                "slices_near_centre": _attribute_text(h5file, "slices_near_centre")})
                acquisitions.append(acquisition)
                terms.append(term)
                preprocessing.append(_attribute_text(h5file, "preprocessing"))
            merged_acquisition = "+".join(dict.fromkeys(acquisitions))
            attributes = {
                "acquisition": merged_acquisition, "sources": json.dumps(sources),
                "terms": " | ".join(t for t in dict.fromkeys(terms) if t) or "see the sources",
                "preprocessing": " | ".join(p for p in dict.fromkeys(preprocessing) if p) or "unknown",
            }
            writer.finish(attributes)
            volumes = list(dict.fromkeys(writer.volumes))
            num_images = len(writer)
    finally:
        for h5file in files:
            h5file.close()
    renamed = sum(1 for name, n in owners.items() if n > 1)
    notes = [f"{renamed} volume name(s) found in several inputs prefixed by the file stem"] if renamed else []
    return BuildSummary(str(out_path), num_images, len(volumes), size,
                        "merged: " + ", ".join(f"{s['file']} ({s['images']})" for s in sources), merged_acquisition,
                        volumes, notes)
