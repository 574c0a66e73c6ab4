"""Data loading, preprocessing, slice-set building and ``genreg info`` / ``genreg dataset build``.

All fixtures are small synthetic fastMRI-like files written to ``tmp_path`` with h5py, Pillow and NumPy.
"""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from PIL import Image

from genreg_viewer.cli.main import main
from genreg_viewer.data import (
    DataError,
    build_slice_set,
    centre_slice_indices,
    describe_file,
    kspace_to_image,
    load_image,
    load_slice_set,
    load_slice_set_sources,
    load_volume_slices,
    preprocess,
)
from genreg_viewer.data.loading import ImageKeyError
from genreg_viewer.data.preprocess import centre_crop, fft2c, ifft2c

HEADER = (
    b'<?xml version="1.0" encoding="utf-8"?><ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD"><encoding>'
    b"<reconSpace><matrixSize><x>{rows}</x><y>{cols}</y><z>1</z></matrixSize></reconSpace></encoding></ismrmrdHeader>"
)


def blob(shape, centre=(0.5, 0.5), width=0.2):
    """A smooth Gaussian bump sampled at pixel centres of ``shape`` (coordinates in [0, 1])."""
    rows = (np.arange(shape[0]) + 0.5) / shape[0]
    cols = (np.arange(shape[1]) + 0.5) / shape[1]
    return np.exp(-((rows[:, None] - centre[0]) ** 2 + (cols[None, :] - centre[1]) ** 2) / (2 * width**2))


def slice_stack(num_slices, shape):
    """Distinct slices: a bump whose centre moves with the slice index, plus a small offset."""
    return np.stack([blob(shape, (0.3 + 0.4 * i / num_slices, 0.5)) + 0.1 for i in range(num_slices)])


def complex_image(shape, rng):
    return blob(shape[-2:]) * np.exp(1j * rng.uniform(-np.pi, np.pi, shape)) + 0.05


def unit(array):
    array = np.asarray(array, dtype=np.float64)
    return (array - array.min()) / (array.max() - array.min())


def write_singlecoil(path, num_slices=6, shape=(32, 32), acquisition="CORPD_FBK", with_kspace=True):
    """fastMRI single-coil-like volume: ``reconstruction_esc``, ``kspace`` (different content), header, attrs."""
    volume = slice_stack(num_slices, shape).astype(np.float32) * 1e-4
    with h5py.File(path, "w") as f:
        f["reconstruction_esc"] = volume
        if with_kspace:  # deliberately another image, to check reconstruction_esc is preferred
            f["kspace"] = fft2c(np.ones((num_slices, *shape)) + np.arange(shape[1]) / shape[1]).astype(np.complex64)
        f["ismrmrd_header"] = np.bytes_(HEADER.replace(b"{rows}", b"320").replace(b"{cols}", b"320"))
        f.attrs.update(acquisition=acquisition, patient_id="patient-7", max=float(volume.max()), norm=0.01)
    return volume


def write_multicoil_kspace(path, image, coils, header_size=None):
    """Multi-coil k-space only: coil images ``s_c x`` with ``sum_c |s_c|^2 = 1``, so the RSS image is ``|x|``."""
    rng = np.random.default_rng(5)
    weights = rng.uniform(0.2, 1.0, (coils, *image.shape[-2:])) * np.exp(1j * rng.uniform(0, 6, (coils, 1, 1)))
    weights /= np.sqrt((np.abs(weights) ** 2).sum(0))
    kspace = fft2c(weights[None] * image[:, None])  # (slices, coils, rows, cols)
    with h5py.File(path, "w") as f:
        f["kspace"] = kspace.astype(np.complex64)
        if header_size:
            rows, cols = (str(n).encode() for n in header_size)
            f["ismrmrd_header"] = np.bytes_(HEADER.replace(b"{rows}", rows).replace(b"{cols}", cols))
        f.attrs["acquisition"] = "CORPD_FBK"


# ------------------------------------------------------------------------------------------- preprocessing


def test_preprocess_range_size_dtype(rng):
    out = preprocess(rng.normal(size=(320, 320)) * 1e-4 + 3.0)
    assert out.shape == (128, 128) and out.dtype == np.float32
    assert out.min() == 0.0 and out.max() == 1.0


def test_preprocess_crops_to_square_instead_of_stretching():
    centre = blob((60, 60))
    image = np.full((60, 100), 50.0)  # bright borders that must be cropped away
    image[:, 20:80] = centre
    np.testing.assert_allclose(preprocess(image, size=60), unit(centre), atol=1e-6)
    assert preprocess(image, size=128).shape == (128, 128)
    tall = np.full((90, 40), 50.0)
    tall[25:65] = blob((40, 40))
    np.testing.assert_allclose(preprocess(tall, size=40), unit(blob((40, 40))), atol=1e-6)


def test_preprocess_resize_is_anti_aliased():
    """Stripes above the new Nyquist frequency average out instead of aliasing into the resized image."""
    stripes = np.zeros((320, 320))
    stripes[::2] = 1.0
    expected = unit(blob((128, 128)))
    assert np.abs(preprocess(blob((320, 320)), size=128) - expected).max() < 1e-3  # smooth content is kept
    out = preprocess(blob((320, 320)) + 0.5 * stripes, size=128)
    assert np.abs(out - expected)[2:-2, 2:-2].max() < 0.05  # stripes (a third of the range) are nearly gone
    nearest = unit(np.asarray(Image.fromarray((blob((320, 320)) + 0.5 * stripes).astype(np.float32)).resize(
        (128, 128), Image.Resampling.NEAREST)))
    assert np.abs(nearest - expected).max() > 0.2  # what no anti-aliasing would give


def test_preprocess_size_none_keeps_field_of_view_and_complex_becomes_magnitude(rng):
    image = complex_image((40, 64), rng)
    out = preprocess(image, size=None)
    assert out.shape == (40, 64)
    np.testing.assert_allclose(out, unit(np.abs(image)), atol=1e-6)


@pytest.mark.parametrize(
    "array, message",
    [
        (np.zeros(10), "2-D array"),
        (np.zeros((2, 3, 8, 8)), "2-D array"),
        (np.full((8, 8), 0.3), "constant"),
        (np.where(np.eye(8) > 0, np.nan, 1.0), "NaN or infinite"),
        (np.where(np.eye(8) > 0, np.inf, 1.0), "NaN or infinite"),
        (np.ones((2, 50)), "too small"),
    ],
)
def test_preprocess_errors(array, message):
    with pytest.raises(DataError, match=message):
        preprocess(array)


def test_preprocess_rejects_bad_size():
    with pytest.raises(DataError, match="size must be"):
        preprocess(np.eye(8), size=0)


# -------------------------------------------------------------------------------------------- fastMRI files


def test_ifft2c_inverts_fft2c(rng):
    image = complex_image((24, 18), rng)
    np.testing.assert_allclose(ifft2c(fft2c(image)), image, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(fft2c(image)), np.linalg.norm(image))  # orthonormal


def test_singlecoil_loads_centre_slice_of_reconstruction_with_meta(tmp_path):
    volume = write_singlecoil(tmp_path / "vol.h5")
    loaded = load_image(tmp_path / "vol.h5", size=None)
    assert loaded.slice_index == 3 and loaded.num_slices == 6
    np.testing.assert_allclose(loaded.image, unit(volume[3]), atol=1e-6)
    meta = loaded.meta
    assert meta["key"] == "reconstruction_esc" and meta["acquisition"] == "CORPD_FBK"
    assert meta["patient_id"] == "patient-7" and meta["norm"] == 0.01 and meta["has_ismrmrd_header"]
    assert meta["max"] == pytest.approx(float(volume.max()))
    assert meta["original_shape"] == [32, 32]
    json.dumps(meta)  # JSON-safe for the GUI and the CLI


def test_singlecoil_slice_picking_and_resize(tmp_path):
    volume = write_singlecoil(tmp_path / "vol.h5")
    for index in (0, 5):
        loaded = load_image(tmp_path / "vol.h5", slice_index=index, size=None)
        np.testing.assert_allclose(loaded.image, unit(volume[index]), atol=1e-6)
    resized = load_image(tmp_path / "vol.h5", slice_index=1, size=64).image
    assert resized.shape == (64, 64) and resized.min() == 0 and resized.max() == 1


def test_key_selects_kspace_of_singlecoil_file(tmp_path):
    write_singlecoil(tmp_path / "vol.h5")
    loaded = load_image(tmp_path / "vol.h5", key="kspace", size=None)
    assert loaded.meta["key"] == "kspace" and loaded.meta["coils"] == 1
    expected = np.ones((32, 32)) + np.arange(32) / 32
    np.testing.assert_allclose(loaded.image, unit(expected), atol=1e-5)


@pytest.mark.parametrize("coils", [1, 4])
def test_multicoil_kspace_rss_equals_magnitude_of_known_image(tmp_path, rng, coils):
    image = np.stack([complex_image((40, 30), rng) for _ in range(3)])
    write_multicoil_kspace(tmp_path / "mc.h5", image, coils)
    with h5py.File(tmp_path / "mc.h5") as f:
        np.testing.assert_allclose(kspace_to_image(f["kspace"][1]), np.abs(image[1]), atol=1e-5)
    loaded = load_image(tmp_path / "mc.h5", size=None)
    assert loaded.meta["key"] == "kspace" and loaded.meta["coils"] == coils and loaded.slice_index == 1
    np.testing.assert_allclose(loaded.image, unit(np.abs(image[1])), atol=1e-5)


def test_kspace_is_cropped_to_fastmri_320_or_header_matrix(tmp_path, rng):
    big = complex_image((1, 400, 330), rng)
    write_multicoil_kspace(tmp_path / "big.h5", big, coils=2)
    loaded = load_image(tmp_path / "big.h5", size=None)
    assert loaded.image.shape == (320, 320)
    np.testing.assert_allclose(loaded.image, unit(centre_crop(np.abs(big[0]), (320, 320))), atol=1e-5)
    small = complex_image((2, 80, 60), rng)
    write_multicoil_kspace(tmp_path / "header.h5", small, coils=2, header_size=(40, 50))
    loaded = load_image(tmp_path / "header.h5", size=None)
    assert loaded.image.shape == (40, 50) and loaded.meta["recon_size"] == [40, 50]
    np.testing.assert_allclose(loaded.image, unit(np.abs(small[1])[20:60, 5:55]), atol=1e-5)


def test_load_volume_slices_near_centre(tmp_path):
    volume = write_singlecoil(tmp_path / "vol.h5", num_slices=7)
    loaded = load_volume_slices(tmp_path / "vol.h5", near_centre=3, size=None)
    assert [item.slice_index for item in loaded] == [2, 3, 4]
    for item in loaded:
        np.testing.assert_allclose(item.image, unit(volume[item.slice_index]), atol=1e-6)
    assert [i.slice_index for i in load_volume_slices(tmp_path / "vol.h5", [6, 0], size=16)] == [6, 0]


def test_centre_slice_indices():
    assert centre_slice_indices(35, 8) == list(range(13, 21))
    assert centre_slice_indices(4, 2) == [1, 2]
    assert centre_slice_indices(5, 10) == [0, 1, 2, 3, 4]
    with pytest.raises(DataError, match="at least 1"):
        centre_slice_indices(5, 0)


# --------------------------------------------------------------------------------------- images and arrays


def test_png_rgb_and_16_bit_images(tmp_path):
    gray = (unit(blob((50, 70))) * 255).astype(np.uint8)
    Image.fromarray(gray).convert("RGB").save(tmp_path / "rgb.png")
    loaded = load_image(tmp_path / "rgb.png", size=None)
    assert loaded.slice_index is None and loaded.num_slices == 1 and loaded.meta["mode"] == "RGB"
    np.testing.assert_allclose(loaded.image, unit(gray), atol=1 / 255)
    deep = (unit(blob((40, 40))) * 60000).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    np.testing.assert_allclose(load_image(tmp_path / "deep.png", size=None).image, unit(deep), atol=1e-6)


def test_multipage_tiff_is_a_volume(tmp_path):
    frames = [Image.fromarray((unit(s) * 255).astype(np.uint8)) for s in slice_stack(3, (24, 24))]
    frames[0].save(tmp_path / "stack.tif", save_all=True, append_images=frames[1:])
    loaded = load_image(tmp_path / "stack.tif", slice_index=2, size=None)
    assert loaded.num_slices == 3 and loaded.slice_index == 2
    np.testing.assert_allclose(loaded.image, unit(np.asarray(frames[2])), atol=1e-6)


def test_npy_and_npz(tmp_path, rng):
    volume = slice_stack(5, (20, 20))
    np.save(tmp_path / "vol.npy", volume)
    loaded = load_image(tmp_path / "vol.npy", size=None)
    assert loaded.slice_index == 2 and loaded.num_slices == 5
    np.testing.assert_allclose(loaded.image, unit(volume[2]), atol=1e-6)
    image = complex_image((20, 20), rng)
    np.save(tmp_path / "complex.npy", image)
    np.testing.assert_allclose(load_image(tmp_path / "complex.npy", size=None).image, unit(np.abs(image)), atol=1e-6)
    np.savez(tmp_path / "arrays.npz", labels=np.arange(3), first=volume[0], second=volume)
    assert load_image(tmp_path / "arrays.npz", size=None).meta["key"] == "first"
    picked = load_image(tmp_path / "arrays.npz", key="second", slice_index=4, size=None)
    np.testing.assert_allclose(picked.image, unit(volume[4]), atol=1e-6)


# ------------------------------------------------------------------------------------------------- errors


def test_file_errors(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        load_image(tmp_path / "missing.h5")
    (tmp_path / "text.h5").write_text("not hdf5 at all")
    with pytest.raises(DataError, match="not an HDF5 file"):
        load_image(tmp_path / "text.h5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["weights"] = np.zeros((3, 4))
        f["group/bias"] = np.zeros(2)
    with pytest.raises(DataError, match=r"no image dataset.*group/bias \(2,\).*weights \(3, 4\)"):
        load_image(tmp_path / "other.h5")
    with pytest.raises(DataError, match="no dataset 'nope'"):
        load_image(tmp_path / "other.h5", key="nope")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="unsupported file type '.txt'"):
        load_image(tmp_path / "notes.txt")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(200)))
    with pytest.raises(DataError, match="could not read image file"):
        load_image(tmp_path / "broken.png")
    Image.fromarray(np.eye(64, dtype=np.uint8) * 255).save(tmp_path / "ok.png")
    (tmp_path / "truncated.png").write_bytes((tmp_path / "ok.png").read_bytes()[:60])
    with pytest.raises(DataError, match="could not read image file"):
        load_image(tmp_path / "truncated.png")
    with pytest.raises(DataError, match="only applies to .h5 and .npz"):
        load_image(tmp_path / "ok.png", key="x")


def test_array_errors(tmp_path):
    np.save(tmp_path / "line.npy", np.arange(10.0))
    with pytest.raises(DataError, match=r"shape \(10,\); expected a 2-D image"):
        load_image(tmp_path / "line.npy")
    np.save(tmp_path / "four.npy", np.ones((2, 2, 8, 8)))
    with pytest.raises(DataError, match="expected a 2-D image"):
        load_image(tmp_path / "four.npy")
    np.save(tmp_path / "rgb.npy", np.ones((32, 32, 3)))
    with pytest.raises(DataError, match="channel-last"):
        load_image(tmp_path / "rgb.npy")
    nan = np.ones((16, 16))
    nan[3, 4] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    with pytest.raises(DataError, match="nan.npy.*1 NaN or infinite"):
        load_image(tmp_path / "nan.npy")
    np.save(tmp_path / "flat.npy", np.full((3, 16, 16), 2.0))
    with pytest.raises(DataError, match=r"flat.npy \(slice 1\).*constant"):
        load_image(tmp_path / "flat.npy")
    np.save(tmp_path / "empty.npy", np.zeros((0, 16, 16)))
    with pytest.raises(DataError, match="holds no slices"):
        load_image(tmp_path / "empty.npy")
    np.savez(tmp_path / "labels.npz", labels=np.arange(3))
    with pytest.raises(DataError, match="no 2-D or 3-D array; it holds: labels"):
        load_image(tmp_path / "labels.npz")


def test_slice_index_out_of_range(tmp_path):
    write_singlecoil(tmp_path / "vol.h5")
    with pytest.raises(DataError, match=r"slice 6 is out of range: .* holds 6 slices \(0-5\)"):
        load_image(tmp_path / "vol.h5", slice_index=6)
    with pytest.raises(DataError, match="out of range"):
        load_image(tmp_path / "vol.h5", slice_index=-1)
    np.save(tmp_path / "image.npy", blob((16, 16)))
    with pytest.raises(DataError, match="single 2-D image"):
        load_image(tmp_path / "image.npy", slice_index=1)


# ------------------------------------------------------------------------------------------ dataset build


def make_fastmri_folder(folder):
    folder.mkdir()
    volumes = {
        "file_a.h5": write_singlecoil(folder / "file_a.h5", num_slices=7, with_kspace=False),
        "file_b.h5": write_singlecoil(folder / "file_b.h5", num_slices=5, with_kspace=False),
    }
    write_singlecoil(folder / "file_fs.h5", num_slices=4, acquisition="CORPDFS_FBK", with_kspace=False)
    return volumes


def test_build_slice_set(tmp_path):
    volumes = make_fastmri_folder(tmp_path / "train")
    out = tmp_path / "sets" / "train.h5"
    summary = build_slice_set(tmp_path / "train", out, slices_near_centre=3, size=16, progress=False)
    assert (summary.num_images, summary.num_volumes, summary.filtered_out, summary.skipped) == (6, 2, 1, [])
    images = load_slice_set(out)
    assert images.shape == (6, 16, 16) and images.dtype == np.float32
    assert images.min() == 0 and images.max() == 1
    sources = load_slice_set_sources(out)
    assert sources == [("file_a.h5", 2), ("file_a.h5", 3), ("file_a.h5", 4),
                       ("file_b.h5", 1), ("file_b.h5", 2), ("file_b.h5", 3)]
    for image, (name, index) in zip(images, sources):
        np.testing.assert_array_equal(image, preprocess(volumes[name][index], size=16))
    # a slice set loads like a volume, and `any` keeps every acquisition
    assert load_image(out, slice_index=4, size=None).meta["key"] == "images"
    everything = build_slice_set(tmp_path / "train", tmp_path / "all.h5", 3, size=16, acquisition="any",
                                 progress=False)
    assert everything.num_images == 9 and everything.num_volumes == 3


def test_build_slice_set_errors_leave_existing_output(tmp_path):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "set.h5"
    out.write_bytes(b"previous")
    with pytest.raises(DataError, match="no .h5 files in"):
        build_slice_set(tmp_path / "empty", out, 4, progress=False)
    with pytest.raises(DataError, match="folder not found"):
        build_slice_set(tmp_path / "missing", out, 4, progress=False)
    make_fastmri_folder(tmp_path / "fs")
    with pytest.raises(DataError, match=r"no volume .* acquisition 'AXT2' \(found: CORPD_FBK x2, CORPDFS_FBK x1\)"):
        build_slice_set(tmp_path / "fs", out, 4, acquisition="AXT2", progress=False)
    with pytest.raises(DataError, match="slices-near-centre"):
        build_slice_set(tmp_path / "fs", out, 0, progress=False)
    assert out.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "fs", "set.h5"]  # no temporary left behind
    with pytest.raises(DataError, match="not a slice set"):
        load_slice_set(tmp_path / "fs" / "file_a.h5")


def test_build_skips_unreadable_volumes(tmp_path):
    make_fastmri_folder(tmp_path / "train")
    (tmp_path / "train" / "broken.h5").write_text("oops")
    summary = build_slice_set(tmp_path / "train", tmp_path / "set.h5", 2, size=16, progress=False)
    assert summary.num_volumes == 2 and [name for name, _ in summary.skipped] == ["broken.h5"]


# ------------------------------------------------------------------------------------------------ the CLI


def test_unknown_hdf5_layout_lists_the_datasets_a_key_could_name(tmp_path):
    scans = slice_stack(4, (24, 24))
    with h5py.File(tmp_path / "custom.h5", "w") as f:
        f["scans/magnitude"] = scans
        f["phase"] = np.zeros((24, 24), np.complex64)
        f["labels"] = np.array([b"a", b"b"])  # strings, 1-D: no image
        f["vector"] = np.zeros(5)
        f["volume4d"] = np.zeros((2, 2, 8, 8))
        f["empty"] = np.zeros((0, 8))
    with pytest.raises(ImageKeyError, match="Choose one with key=NAME") as caught:
        load_image(tmp_path / "custom.h5")
    assert isinstance(caught.value, DataError)
    assert caught.value.candidates == ("phase", "scans/magnitude")
    assert caught.value.path == str(tmp_path / "custom.h5")
    loaded = load_image(tmp_path / "custom.h5", key=caught.value.candidates[1], slice_index=1, size=None)
    assert loaded.num_slices == 4 and loaded.meta["key"] == "scans/magnitude"
    np.testing.assert_allclose(loaded.image, preprocess(scans[1], None), atol=1e-6)
    info = describe_file(tmp_path / "custom.h5")
    assert info["image_key"] is None and info["image_key_candidates"] == ["phase", "scans/magnitude"]
    with h5py.File(tmp_path / "nothing.h5", "w") as f:
        f["vector"] = np.zeros(5)
    with pytest.raises(ImageKeyError) as caught:
        load_image(tmp_path / "nothing.h5")
    assert caught.value.candidates == ()


def test_describe_file_kinds(tmp_path):
    write_singlecoil(tmp_path / "vol.h5")
    info = describe_file(tmp_path / "vol.h5")
    assert info["kind"] == "fastmri" and info["num_slices"] == 6 and info["coils"] == 1
    assert info["image_key"] == "reconstruction_esc" and info["attributes"]["acquisition"] == "CORPD_FBK"
    assert {d["name"] for d in info["datasets"]} == {"reconstruction_esc", "kspace", "ismrmrd_header"}
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["weights"] = np.zeros((3, 4))
    other = describe_file(tmp_path / "other.h5")  # describable even though no image can be loaded from it
    assert other["kind"] == "hdf5" and other["image_key"] is None and "no image dataset" in other["problem"]
    Image.fromarray(np.zeros((30, 40), np.uint8)).save(tmp_path / "image.png")
    png = describe_file(tmp_path / "image.png")
    assert (png["kind"], png["width"], png["height"], png["mode"]) == ("image", 40, 30, "L")
    np.save(tmp_path / "vol.npy", np.zeros((4, 8, 8), np.float32))
    assert describe_file(tmp_path / "vol.npy")["shape"] == [4, 8, 8]


def test_cli_info_text_and_json(tmp_path, capsys):
    write_singlecoil(tmp_path / "vol.h5")
    assert main(["info", str(tmp_path / "vol.h5")]) == 0
    text = capsys.readouterr().out
    assert "fastMRI single-coil volume, CORPD_FBK, 6 slices" in text
    assert "reconstruction_esc" in text and "(6, 32, 32)" in text and "patient_id = patient-7" in text
    assert main(["info", "--json", str(tmp_path / "vol.h5")]) == 0
    assert json.loads(capsys.readouterr().out)["num_slices"] == 6


def test_cli_dataset_build_and_info(tmp_path, capsys):
    make_fastmri_folder(tmp_path / "train")
    out = tmp_path / "train_set.h5"
    code = main(["dataset", "build", str(tmp_path / "train"), str(out), "--slices-near-centre", "2", "--size", "16",
                 "--no-progress"])
    assert code == 0
    assert f"4 slices of 16x16 from 2 volume(s) -> {out}" in capsys.readouterr().out
    assert main(["info", str(out)]) == 0
    assert "slice set of 4 images (16, 16) from 2 volumes" in capsys.readouterr().out


def test_cli_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["dataset", "build", str(tmp_path / "empty"), str(tmp_path / "x.h5"), "--slices-near-centre", "2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("genreg dataset: error: no .h5 files in") and err.count("\n") == 1
    assert main(["info", str(tmp_path / "missing.png")]) == 2
    assert capsys.readouterr().err.strip() == f"genreg info: error: file not found: {tmp_path / 'missing.png'}"
