"""``genreg dataset build --format refinegan``: subjects recovered by clustering, splits by subject, bad files.

Every file here is synthetic (phantoms written in RefineGAN's layout: TIFFs of two float32 frames, real and
imaginary part, shuffled over two folders); no scan is used."""

from __future__ import annotations

import json
import struct

import h5py
import numpy as np
import pytest
from PIL import Image

from genreg_viewer.cli.main import main
from genreg_viewer.data import DataError, load_slice_set, load_slice_set_sources, preprocess
from genreg_viewer.data.phantom import knee_phantom
from genreg_viewer.data.refinegan import (
    build_refinegan_slice_set,
    cluster_subjects,
    clustering_features,
    find_refinegan_files,
    read_refinegan_slice,
)

SIDE = 32


def write_slice(path, data: np.ndarray) -> None:
    """A RefineGAN-like TIFF: two float32 frames, the real and the imaginary part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = [Image.fromarray(np.ascontiguousarray(part, dtype=np.float32)) for part in (data.real, data.imag)]
    frames[0].save(path, save_all=True, append_images=frames[1:])


def subject_slices(subject: int, count: int, rng) -> list[np.ndarray]:
    """``count`` complex slices of one subject: one phantom, a little different from slice to slice."""
    base = knee_phantom(1000 + 37 * subject, SIDE).astype(np.float64)
    phase = np.exp(1j * rng.uniform(0, 2 * np.pi))
    return [(base * (1 + 0.05 * k) + 0.01 * rng.standard_normal(base.shape)) * phase for k in range(count)]


@pytest.fixture
def refinegan_dir(tmp_path):
    """3 subjects x 4 slices, shuffled over db_train (1-6) and db_valid (1-6); returns (root, {file: subject})."""
    rng = np.random.default_rng(7)
    slices = [(s, data) for s in range(3) for data in subject_slices(s, 4, rng)]
    order = rng.permutation(len(slices))
    truth = {}
    root = tmp_path / "knees"
    for position, index in enumerate(order):
        folder, number = ("db_train", position + 1) if position < 6 else ("db_valid", position - 5)
        subject, data = slices[index]
        write_slice(root / folder / f"{number}.tif", data)
        truth[f"{folder}/{number}.tif"] = (subject, data)
    return root, truth


def test_clusters_recover_subjects_numbered_by_first_file(refinegan_dir, tmp_path):
    root, truth = refinegan_dir
    out = tmp_path / "all.h5"
    summary = build_refinegan_slice_set(root, out, slices_per_subject=4, size=16, progress=False)
    assert (summary.num_images, summary.num_volumes) == (12, 3)
    with h5py.File(out) as f:
        files = f["file"].asstr()[...].tolist()
        assert f.attrs["acquisition"] == "refinegan:sagittal-fse-pd"
        assert "not for commercialization" in f.attrs["terms"]
    sources = load_slice_set_sources(out)
    # each recovered subject holds exactly one true subject's files
    groups: dict[str, set] = {}
    for (volume, _), name in zip(sources, files):
        groups.setdefault(volume, set()).add(truth[name][0])
    assert all(len(found) == 1 for found in groups.values()) and len(groups) == 3
    # numbered by the smallest (folder, number): subject00 holds db_train/1.tif
    assert sources[0][0] == "refinegan/subject00" and files[0] == "db_train/1.tif"
    firsts = [files[[v for v, _ in sources].index(f"refinegan/subject{s:02d}")] for s in range(3)]
    key = [(name.split("/")[0], int(name.split("/")[1][:-4])) for name in firsts]
    assert key == sorted(key)
    assert [index for _, index in sources] == [0, 1, 2, 3] * 3
    # each image is the magnitude preprocessed like every other format
    images = load_slice_set(out)
    for image, name in zip(images, files):
        np.testing.assert_allclose(image, preprocess(truth[name][1], 16), atol=1e-6)


def test_subject_ranges_split_and_cli(refinegan_dir, tmp_path, capsys):
    root, _ = refinegan_dir
    out = tmp_path / "val.h5"
    code = main(["dataset", "build", "--format", "refinegan", str(root), str(out), "--subjects", "1-2",
                 "--slices-per-subject", "4", "--size", "16", "--no-progress", "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["num_images"] == 8
    assert summary["volumes"] == ["refinegan/subject01", "refinegan/subject02"]
    for args, message in ((["--subjects", "7-"], "no subject in"),
                          (["--slices-near-centre", "2"], "does not apply"),
                          (["--key", "x"], "does not apply"),
                          ([], "do not make whole subjects of 10")):
        assert main(["dataset", "build", "--format", "refinegan", str(root), str(tmp_path / "x.h5"),
                     "--no-progress", *args, *(["--slices-per-subject", "4"] if args else [])]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
    assert not (tmp_path / "x.h5").exists()


def test_clusters_that_are_not_whole_subjects_are_refused(refinegan_dir, tmp_path):
    root, _ = refinegan_dir
    with pytest.raises(DataError, match="do not cluster into 2 subjects of 6"):
        build_refinegan_slice_set(root, tmp_path / "x.h5", slices_per_subject=6, progress=False)
    with pytest.raises(DataError, match="do not make whole subjects of 5"):
        build_refinegan_slice_set(root, tmp_path / "x.h5", slices_per_subject=5, progress=False)
    features = np.stack([clustering_features(np.abs(d)) for d in subject_slices(0, 4, np.random.default_rng(1))])
    with pytest.raises(DataError, match="at least two"):
        cluster_subjects(features, 4)  # one subject: nothing to separate
    assert not (tmp_path / "x.h5").exists()


def tiff_header_only(path, width: int, height: int) -> None:
    """A little-endian TIFF whose header declares one float32 frame of ``width x height`` and holds no pixels."""
    entries = [(256, 4, width), (257, 4, height), (258, 3, 32), (259, 3, 1), (262, 3, 1), (273, 4, 8),
               (277, 3, 1), (278, 4, height), (279, 4, width * height * 4), (339, 3, 3)]
    ifd = struct.pack("<H", len(entries))
    for tag, kind, value in entries:
        ifd += struct.pack("<HHI", tag, kind, 1) + (struct.pack("<HH", value, 0) if kind == 3
                                                   else struct.pack("<I", value))
    path.write_bytes(b"II*\x00" + struct.pack("<I", 8 + 0) + ifd + struct.pack("<I", 0))


def test_bad_files_are_refused_with_a_clear_message(tmp_path):
    bad = tmp_path / "bad"
    cases = {
        "corrupt": lambda p: p.write_bytes(b"II*\x00 not a tiff at all"),
        "one frame": lambda p: Image.fromarray(np.ones((8, 8), np.float32)).save(p),
        "8-bit": lambda p: Image.fromarray(np.ones((8, 8), np.uint8)).save(p),
        "large header": lambda p: tiff_header_only(p, 2000, 2000),
        "huge header": lambda p: tiff_header_only(p, 30000, 30000),
        "nan": lambda p: write_slice(p, np.full((8, 8), np.nan) + 0j),
    }
    messages = {"corrupt": "could not read", "one frame": r"1 frame\(s\)", "8-bit": "32-bit float",
                "large header": "RefineGAN slices are 256 x 256", "huge header": "too large", "nan": "NaN"}
    for name, write in cases.items():
        path = bad / f"{name.replace(' ', '_')}.tif"
        bad.mkdir(exist_ok=True)
        write(path)
        with pytest.raises(DataError, match=messages[name]):
            read_refinegan_slice(path)
    with pytest.raises(DataError, match="no RefineGAN slices"):
        find_refinegan_files(tmp_path / "bad")  # names are not numbers
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no RefineGAN slices"):
        find_refinegan_files(tmp_path / "empty")
    with pytest.raises(DataError, match="not a folder"):
        find_refinegan_files(tmp_path / "missing")


def test_slices_of_different_sizes_are_refused(tmp_path):
    rng = np.random.default_rng(3)
    for number, data in enumerate(subject_slices(0, 2, rng), start=1):
        write_slice(tmp_path / "k" / f"{number}.tif", data)
    write_slice(tmp_path / "k" / "3.tif", np.ones((16, 16)) + 1j * rng.standard_normal((16, 16)))
    with pytest.raises(DataError, match="different sizes"):
        build_refinegan_slice_set(tmp_path / "k", tmp_path / "x.h5", slices_per_subject=1, progress=False)
