"""``genreg dataset build --format mat``: 3-D arrays from MATLAB v5 and v7.3 files, the slicing axis, bad files.

Every file here is synthetic (phantom stacks written with scipy.io.savemat and h5py); no scan is used."""

from __future__ import annotations

import json
import struct

import h5py
import numpy as np
import pytest
from scipy.io import savemat

from genreg_viewer.cli.main import main
from genreg_viewer.data import DataError, load_slice_set, load_slice_set_sources, preprocess
from genreg_viewer.data.matfile import best_axis, build_mat_slice_set, load_mat_volume
from genreg_viewer.data.phantom import phantom_batch


@pytest.fixture
def volume():
    """A uint8 (20, 12, 16) stack whose slices along axis 1 are 20 x 16 phantoms (each slice distinct)."""
    stack = (phantom_batch(12, 5, size=20)[:, :, 2:18] * 250).astype(np.uint8)  # (12, 20, 16)
    return np.ascontiguousarray(np.moveaxis(stack, 0, 1))


def write_v73(path, arrays: dict, **dataset_options) -> None:
    """A MATLAB v7.3 file: HDF5 with a 512-byte user block and each array stored with its axes reversed."""
    with h5py.File(path, "w", userblock_size=512) as f:
        for name, array in arrays.items():
            f.create_dataset(name, data=np.asarray(array).T, **dataset_options)
            f[name].attrs["MATLAB_class"] = np.bytes_({"uint8": "uint8", "float64": "double"}[array.dtype.name])
    with open(path, "r+b") as handle:
        handle.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64".ljust(116) + b"\0" * 12 + b"\x00\x02IM")


def test_v5_and_v73_give_the_same_slices_along_the_best_axis(volume, tmp_path):
    v5, v73 = tmp_path / "knee.mat", tmp_path / "knee73.mat"
    savemat(v5, {"vol": volume, "omega": np.array([[0, 1, 0, 1]])}, do_compression=True)
    write_v73(v73, {"vol": volume, "omega": np.array([[0.0, 1.0]])})
    for path in (v5, v73):
        name, array = load_mat_volume(path)
        assert name == "vol" and array.shape == (20, 12, 16) and np.array_equal(array, volume)
    assert best_axis((20, 12, 16)) == 1 and best_axis((128, 64, 128)) == 1 and best_axis((8, 8, 8)) == 0
    out = tmp_path / "v5.h5"
    summary = build_mat_slice_set(v5, out, size=16, progress=False)
    assert summary.num_images == 12 and "axis 1 (20x16, largest, most square slices)" in summary.line()
    images = load_slice_set(out)
    for k in range(12):
        np.testing.assert_allclose(images[k], preprocess(volume[:, k, :], 16), atol=1e-6)
    assert load_slice_set_sources(out)[3] == ("mat/knee/vol", 3)
    build_mat_slice_set(v73, tmp_path / "v73.h5", size=16, progress=False)
    np.testing.assert_array_equal(load_slice_set(tmp_path / "v73.h5"), images)


def test_cli_axis_centre_slices_rotation_and_key(volume, tmp_path, capsys):
    path = tmp_path / "two.mat"
    savemat(path, {"dataT": volume, "dataR": volume[::-1]})
    out = tmp_path / "t.h5"
    assert main(["dataset", "build", "--format", "mat", str(path), str(out), "--no-progress"]) == 2
    assert "choose one with --key NAME" in capsys.readouterr().err
    code = main(["dataset", "build", "--format", "mat", str(path), str(out), "--key", "dataT", "--axis", "2",
                 "--slices-near-centre", "4", "--rotate", "90", "--size", "16", "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["num_images"] == 4 and "axis 2 (20x12, chosen with --axis" in summary["notes"][0]
    assert [i for _, i in load_slice_set_sources(out)] == [6, 7, 8, 9]
    np.testing.assert_allclose(load_slice_set(out)[0], preprocess(np.rot90(volume[:, :, 6]), 16), atol=1e-6)
    with h5py.File(out) as f:
        assert f.attrs["acquisition"] == "mat:two/dataT:axis2" and f.attrs["rotate"] == 90
    for args, message in ((["--key", "nope"], "has no variable 'nope'"), (["--key", "dataT", "--axis", "3"],
                          "--axis must be 0, 1 or 2"), (["--key", "dataT", "--subjects", "1"], "does not apply")):
        assert main(["dataset", "build", "--format", "mat", str(path), str(out), *args]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err


def test_bad_mat_files_are_refused_from_the_header(volume, tmp_path):
    out = tmp_path / "x.h5"
    corrupt = tmp_path / "corrupt.mat"
    corrupt.write_bytes(b"MATLAB 5.0 MAT-file" + bytes(range(256)) * 4)
    with pytest.raises(DataError, match="not a readable MATLAB file"):
        build_mat_slice_set(corrupt, out, progress=False)
    flat = tmp_path / "flat.mat"
    savemat(flat, {"image": volume[:, 0, :]})
    with pytest.raises(DataError, match="no 3-D numeric arrays"):
        build_mat_slice_set(flat, out, progress=False)
    with pytest.raises(DataError, match="not a 3-D numeric array"):
        build_mat_slice_set(flat, out, key="image", progress=False)
    # a v5 header declaring a 2000 x 3000 x 4000 array (24 GB) is refused before the data is read
    huge = tmp_path / "huge.mat"
    savemat(huge, {"vol": np.zeros((2, 3, 4), np.uint8)})
    data = huge.read_bytes()
    assert data.count(struct.pack("<iii", 2, 3, 4)) == 1
    huge.write_bytes(data.replace(struct.pack("<iii", 2, 3, 4), struct.pack("<iii", 2000, 3000, 4000)))
    with pytest.raises(DataError, match="more than the limit"):
        build_mat_slice_set(huge, out, progress=False)
    # v7.3: a huge declared dataset, and data stored in an external file
    huge73 = tmp_path / "huge73.mat"
    with h5py.File(huge73, "w") as f:
        f.create_dataset("vol", shape=(40000, 40000, 4), dtype="f8", chunks=(1, 100, 4))
    with pytest.raises(DataError, match="exceeds the limit|more than the limit"):
        build_mat_slice_set(huge73, out, progress=False)
    raw = tmp_path / "raw.bin"
    raw.write_bytes(volume.tobytes())
    external = tmp_path / "external.mat"
    with h5py.File(external, "w") as f:
        f.create_dataset("vol", shape=volume.T.shape, dtype="u1", external=[(str(raw), 0, volume.nbytes)])
    with pytest.raises(DataError, match="external files"):
        build_mat_slice_set(external, out, progress=False)
    constant = tmp_path / "constant.mat"
    savemat(constant, {"vol": np.ones((8, 8, 8))})
    with pytest.raises(DataError, match="every slice is constant"):
        build_mat_slice_set(constant, out, progress=False)
    with pytest.raises(DataError, match="not found"):
        build_mat_slice_set(tmp_path / "missing.mat", out, progress=False)
    assert not out.exists()
