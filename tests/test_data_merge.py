"""``genreg dataset merge``: slice sets concatenated, colliding volume names prefixed, sources recorded, bad inputs.

Every slice set here is synthetic (phantoms)."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from genreg_viewer.cli.main import main
from genreg_viewer.data import DataError, load_slice_set, load_slice_set_sources
from genreg_viewer.data.merge import merge_slice_sets
from genreg_viewer.data.phantom import phantom_batch
from genreg_viewer.data.writer import open_slice_set_writer


def write_set(path, volumes: dict[str, int], seed: int, size: int = 16, acquisition="test", terms="t") -> np.ndarray:
    """A slice set with ``volumes`` = {name: slice count}; returns its images."""
    images = phantom_batch(sum(volumes.values()), seed, size=size)
    with open_slice_set_writer(path, size) as writer:
        start = 0
        for name, count in volumes.items():
            writer.add(images[start:start + count], name, range(count))
            start += count
        writer.finish({"acquisition": acquisition, "terms": terms, "slices_near_centre": 0})
    return images


def test_merge_concatenates_prefixes_collisions_and_records_sources(tmp_path, capsys):
    a = write_set(tmp_path / "a.h5", {"x": 2, "y": 3}, 1, acquisition="mrnet:coronal", terms="MRNet terms")
    b = write_set(tmp_path / "b.h5", {"y": 1, "z": 2}, 9, acquisition="refinegan:sagittal-fse-pd", terms="RG terms")
    out = tmp_path / "merged.h5"
    code = main(["dataset", "merge", str(out), str(tmp_path / "a.h5"), str(tmp_path / "b.h5"), "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["num_images"] == 8 and summary["num_volumes"] == 4
    np.testing.assert_array_equal(load_slice_set(out), np.concatenate([a, b]))
    assert load_slice_set_sources(out) == [("x", 0), ("x", 1), ("a/y", 0), ("a/y", 1), ("a/y", 2), ("b/y", 0),
                                           ("z", 0), ("z", 1)]
    with h5py.File(out) as f:
        sources = json.loads(f.attrs["sources"])
        assert [(s["file"], s["images"], s["acquisition"]) for s in sources] == [
            ("a.h5", 5, "mrnet:coronal"), ("b.h5", 3, "refinegan:sagittal-fse-pd")]
        assert f.attrs["acquisition"] == "mrnet:coronal+refinegan:sagittal-fse-pd"
        assert f.attrs["terms"] == "MRNet terms | RG terms" and f.attrs["size"] == 16


def test_merge_refuses_bad_inputs(tmp_path, capsys):
    write_set(tmp_path / "a.h5", {"x": 2}, 1)
    write_set(tmp_path / "d" / "a.h5", {"x": 1}, 2)
    write_set(tmp_path / "big.h5", {"x": 1}, 3, size=32)
    with h5py.File(tmp_path / "plain.h5", "w") as f:
        f["images"] = np.zeros((1, 16, 16), np.float32)
    with h5py.File(tmp_path / "bad_range.h5", "w") as f:
        f["images"] = np.full((1, 16, 16), 3.0, np.float32)
        f["volume"] = np.array(["v"], dtype=object)
        f["slice"] = np.zeros(1, np.int32)
        f.attrs["format"] = "genreg-slice-set"
    (tmp_path / "text.h5").write_text("not hdf5")
    a = str(tmp_path / "a.h5")
    cases = [
        ([a, str(tmp_path / "big.h5")], "different image sizes (a.h5 16x16, big.h5 32x32)"),
        ([a, str(tmp_path / "plain.h5")], "is not a slice set"),
        ([a, str(tmp_path / "text.h5")], "is not an HDF5 file"),
        ([a, str(tmp_path / "missing.h5")], "slice set not found"),
        ([a, str(tmp_path / "bad_range.h5")], "outside [0, 1]"),
        ([a], "at least two"),
        ([a, a], "more than once"),
    ]
    out = tmp_path / "out.h5"
    for inputs, message in cases:
        assert main(["dataset", "merge", str(out), *inputs]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err
    assert not out.exists()
    with pytest.raises(DataError, match="also an input"):
        merge_slice_sets(a, [a, tmp_path / "d" / "a.h5"])
    # two inputs with one stem: numbered prefixes keep the volumes apart
    merge_slice_sets(out, [a, tmp_path / "d" / "a.h5"])
    assert [v for v, _ in load_slice_set_sources(out)] == ["a-1/x", "a-1/x", "a-2/x"]
