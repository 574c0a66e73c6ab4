"""``genreg evaluate --save-reconstructions DIR``: fastMRI-style volumes read back (PSNR/SSIM recomputed against the
CSV, slices grouped by source volume, the target files fastMRI's evaluation pairs them with), resuming from saved
volumes and staged batches, and refusals in one line."""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from skimage.metrics import structural_similarity

from genreg_viewer.cli.main import main
from genreg_viewer.data.phantom import phantom_batch
from genreg_viewer.evaluation import evaluate as ev
from genreg_viewer.evaluation import reconstructions as rc

pytestmark = pytest.mark.slow  # multi-process evaluation runs

PHANTOMS = "phantom:3:1000000"
#: a slice set's sources: three volumes, slices out of order, one MRNet-style name with a slash
VOLUMES = ["file1001.h5", "file1001.h5", "coronal/0007", "file1000.h5", "file1001.h5"]
SLICES = [14, 12, 3, 7, 13]


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def evaluate(data: str, out: Path, folder: Path | str, *extra: str, methods: str = "adjoint,tv") -> int:
    return main(["evaluate", data, "--methods", methods, "--mask", "radial:25", "--noise", "0.05", "--device", "cpu",
                 "--quiet", "--out", str(out), "--save-reconstructions", str(folder), *extra])


def slice_set(path: Path) -> np.ndarray:
    images = phantom_batch(len(VOLUMES), 2_000_000).astype(np.float32)
    with h5py.File(path, "w") as handle:
        handle.create_dataset("images", data=images)
        handle.create_dataset("volume", data=np.array(VOLUMES, dtype=object), dtype=h5py.string_dtype("utf-8"))
        handle.create_dataset("slice", data=np.asarray(SLICES, dtype=np.int32))
        handle.attrs["acquisition"] = "CORPD_FBK"
    return images


def read_volume(path: Path, key: str = "reconstruction") -> tuple[np.ndarray, list[int], dict]:
    with h5py.File(path, "r") as handle:
        return handle[key][...], handle["genreg_images"][...].tolist(), dict(handle.attrs)


def psnr(image: np.ndarray, truth: np.ndarray) -> float:
    return 10 * math.log10(1.0 / np.mean((image.astype(np.float64) - truth) ** 2))


def ssim(image: np.ndarray, truth: np.ndarray) -> float:
    return structural_similarity(image.astype(np.float64), truth.astype(np.float64), data_range=1.0,
                                 gaussian_weights=True, sigma=1.5, use_sample_covariance=False)


def test_volumes_read_back_give_the_csv_scores(tmp_path, capsys):
    data = tmp_path / "slices.h5"
    truth = slice_set(data)
    folder = tmp_path / "recon"
    assert evaluate(str(data), tmp_path / "r.csv", folder, "--batch", "2") == 0
    assert "3 target volume(s)" in capsys.readouterr().out
    rows = {(r["method"], int(r["image"])): r for r in read_csv(tmp_path / "r.csv")}
    assert len(rows) == 10
    files = sorted(p.name for p in (folder / "target").iterdir())
    assert files == ["coronal_0007.h5", "file1000.h5", "file1001.h5"]
    for method in ("adjoint", "tv"):
        assert sorted(p.name for p in (folder / method).iterdir()) == files  # fastMRI pairs files by name
        for name in files:
            stack, images, attributes = read_volume(folder / method / name)
            target, target_images, target_attributes = read_volume(folder / "target" / name, "reconstruction_esc")
            assert stack.dtype == np.float32 and stack.shape == (len(images), 128, 128) and images == target_images
            assert [SLICES[i] for i in images] == sorted(SLICES[i] for i in images)  # slice order
            assert {VOLUMES[i] for i in images} == {attributes["volume"]}
            np.testing.assert_array_equal(target, truth[images])
            assert (attributes["method"], attributes["mask"], attributes["sigma"], attributes["seed"]) == \
                (method, "radial:25", 0.05, 0)
            assert target_attributes["acquisition"] == "CORPD_FBK" and target_attributes["max"] == truth[images].max()
            assert target_attributes["acceleration"] == attributes["acceleration"] > 1
            for slice_image, index in zip(stack, images):
                row = rows[(method, index)]
                assert psnr(slice_image, truth[index]) == pytest.approx(float(row["psnr"]), abs=2e-5)
                assert ssim(slice_image, truth[index]) == pytest.approx(float(row["ssim"]), abs=2e-5)
    with h5py.File(folder / "target" / "file1001.h5", "r") as handle:  # fastMRI's multi-coil key: the same data
        np.testing.assert_array_equal(handle["reconstruction_rss"][...], handle["reconstruction_esc"][...])
    assert not (folder / rc.STAGING_FOLDER).exists()


def test_resume_takes_saved_volumes_and_staged_batches(tmp_path, monkeypatch):
    out, folder = tmp_path / "r.csv", tmp_path / "recon"
    assert evaluate(PHANTOMS, out, folder, "--images", "2", methods="tv") == 0  # images 0 and 2
    first, images, _ = read_volume(folder / "tv" / "phantom_3_1000000.h5")
    assert images == [0, 2]

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(rc.ReconstructionStore, "finish", interrupted)  # killed after the rows, before the volumes
    config = ev.EvaluationConfig(PHANTOMS, ["tv"], out, device="cpu", save_reconstructions=folder)
    with pytest.raises(KeyboardInterrupt):
        ev.run_evaluation(config, progress=False)
    staged = list((folder / rc.STAGING_FOLDER).rglob("*.npz"))
    assert staged
    # a killed writer's temporaries (hidden names) are not read
    (staged[0].parent / f".{staged[0].name}.genreg-x.npz").write_bytes(b"torn")
    (folder / "tv" / ".phantom_3_1000000.h5.genreg-x.h5").write_bytes(b"torn")
    monkeypatch.undo()
    run = ev.run_evaluation(ev.EvaluationConfig(PHANTOMS, ["tv"], out, device="cpu", save_reconstructions=folder),
                            progress=False)
    assert (run.computed, run.skipped) == (0, 3)
    stack, images, _ = read_volume(folder / "tv" / "phantom_3_1000000.h5")
    assert images == [0, 1, 2]
    np.testing.assert_array_equal(stack[[0, 2]], first)
    truth = phantom_batch(3, 1_000_000)
    rows = {int(r["image"]): float(r["psnr"]) for r in read_csv(out)}
    assert [psnr(stack[i], truth[i]) for i in range(3)] == pytest.approx([rows[i] for i in range(3)], abs=2e-5)
    assert not (folder / rc.STAGING_FOLDER).exists()


def one_line_error(capsys, *needles: str) -> None:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err


def test_refusals_are_one_line_and_before_any_work(tmp_path, capsys):
    out, folder = tmp_path / "r.csv", tmp_path / "recon"
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert evaluate(PHANTOMS, out, a_file, methods="adjoint") == 2
    one_line_error(capsys, "is a file")
    assert evaluate(PHANTOMS, out, a_file / "sub", methods="adjoint") == 2
    one_line_error(capsys, "is not a folder")
    assert not out.exists()  # nothing computed

    assert evaluate(PHANTOMS, out, folder, methods="adjoint,tv") == 0
    capsys.readouterr()
    assert evaluate(PHANTOMS, out, folder, "--noise", "0.1", methods="adjoint") == 2  # another setting
    one_line_error(capsys, "another setting", "sigma 0.05 (not 0.1)")
    assert evaluate(PHANTOMS, out, folder, "--param", "tv:alpha=0.02", methods="tv") == 2  # other options
    one_line_error(capsys, "holds tv with options")
    # rows of this setting in the CSV, their reconstructions nowhere
    plain = tmp_path / "plain.csv"
    assert main(["evaluate", PHANTOMS, "--methods", "tv", "--device", "cpu", "--quiet", "--out", str(plain)]) == 0
    capsys.readouterr()
    assert evaluate(PHANTOMS, plain, tmp_path / "fresh", methods="adjoint,tv") == 2
    one_line_error(capsys, "3 row(s) of tv", "fresh --out")
    # a file another program wrote
    foreign = tmp_path / "foreign"
    (foreign / "tv").mkdir(parents=True)
    with h5py.File(foreign / "tv" / "file1.h5", "w") as handle:
        handle["reconstruction"] = np.zeros((1, 128, 128), np.float32)
    assert evaluate(PHANTOMS, tmp_path / "other.csv", foreign, methods="tv") == 2
    one_line_error(capsys, "was not written by")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_refused(tmp_path, capsys):
    folder = tmp_path / "recon"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        assert evaluate(PHANTOMS, tmp_path / "r.csv", folder, methods="adjoint") == 2
        one_line_error(capsys, "not writable")
    finally:
        folder.chmod(0o700)


def test_volume_file_names():
    names = rc.volume_file_names(["file1000.h5", "coronal/0007", "coronal_0007", "a" * 300])
    assert names["file1000.h5"] == "file1000.h5"
    assert names["coronal/0007"] != names["coronal_0007"]  # one safe stem, told apart by a hash
    assert all(name.startswith("coronal_0007-") for name in (names["coronal/0007"], names["coronal_0007"]))
    assert len(names["a" * 300]) < 230 and names["a" * 300].endswith(".h5")


def test_two_gloo_processes_write_the_single_process_volumes(tmp_path):
    """Under ``torch.distributed.run`` each rank stages its batches and rank 0 writes the volumes: the same files
    as one process with the same batches."""
    args = ["evaluate", "phantom:5:1000000", "--methods", "adjoint", "--batch", "2", "--device", "cpu", "--threads",
            "1", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "single.csv"), "--save-reconstructions", str(tmp_path / "one")]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    completed = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "genreg_viewer.cli.main", *args, "--out", str(tmp_path / "multi.csv"), "--save-reconstructions",
         str(tmp_path / "two")], env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr[-3000:]
    for sub in ("adjoint", "target"):
        key = "reconstruction" if sub == "adjoint" else "reconstruction_esc"
        one, images_one, _ = read_volume(tmp_path / "one" / sub / "phantom_5_1000000.h5", key)
        two, images_two, _ = read_volume(tmp_path / "two" / sub / "phantom_5_1000000.h5", key)
        assert images_one == images_two == [0, 1, 2, 3, 4]
        np.testing.assert_array_equal(one, two)
    assert not (tmp_path / "two" / rc.STAGING_FOLDER).exists()
