"""``genreg recon``: simulated and measured k-space, JSON summary, output files, tuning and user errors."""

import json

import numpy as np
import pytest
from PIL import Image

from genreg_viewer import metrics
from genreg_viewer.application import ExperimentState
from genreg_viewer.application import bundles, sessions
from genreg_viewer.cli.main import main
from genreg_viewer.data.loading import load_image
from genreg_viewer.physics import mask_from_spec, simulate_measurement
from genreg_viewer.recon import Problem, run_method


@pytest.fixture
def image_file(tmp_path):
    rows, cols = np.mgrid[:128, :128] / 128
    image = np.where((rows - 0.5) ** 2 + (cols - 0.5) ** 2 < 0.12, 0.6 + 0.3 * rows, 0.05)
    path = tmp_path / "truth.npy"
    np.save(path, image.astype(np.float32))
    return path


@pytest.fixture
def truth(image_file) -> np.ndarray:
    """The ground truth as genreg recon loads it (rescaled to [0, 1])."""
    return load_image(image_file).image


def run_json(capsys, *args) -> dict:
    assert main(["recon", *map(str, args), "--json", "--device", "cpu"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1  # exactly one JSON object, no progress output on stdout
    return json.loads(out[0])


def test_json_summary_fields(capsys, image_file, truth):
    summary = run_json(capsys, image_file, "--mask", "radial:25", "--noise", "0.05", "--seed", "3",
                       "--method", "tv", "--param", "alpha=0.01", "--iters", "60")
    for key in ("method", "psnr", "ssim", "seconds", "iterations", "device", "params", "mask_fraction", "sigma",
                "seed"):
        assert key in summary
    assert summary["method"] == "tv" and summary["device"] == "cpu"
    assert summary["params"] == {"alpha": 0.01, "constraint": "box", "tolerance": 5e-3}
    assert summary["sigma"] == 0.05 and summary["seed"] == 3
    assert summary["mask_fraction"] == pytest.approx(mask_from_spec("radial:25").mean(), abs=1e-6)
    assert 1 <= summary["iterations"] <= 60
    # the same reconstruction through the library
    problem = Problem(simulate_measurement(truth, mask_from_spec("radial:25"), 0.05, seed=3), truth, seed=3)
    expected = run_method("tv", problem, {"alpha": 0.01}, iterations=60)
    assert summary["psnr"] == pytest.approx(expected.psnr, abs=1e-3)
    assert summary["ssim"] == pytest.approx(expected.ssim, abs=1e-4)


def test_out_bundle_and_png_round_trip(capsys, tmp_path, image_file, truth):
    out, png = tmp_path / "result.npz", tmp_path / "result.png"
    summary = run_json(capsys, image_file, "--method", "lsq", "--iters", "5", "--out", out, "--png", png)
    bundle = bundles.read_bundle(out)  # the app's results format
    meta, arrays = bundle.meta, bundle.arrays
    assert meta["kind"] == "results" and meta["summary"]["psnr"] == summary["psnr"]
    image = arrays["run1__image"]
    assert image.shape == (128, 128) and image.dtype == np.float32
    np.testing.assert_array_equal(arrays["ground_truth"], truth)
    np.testing.assert_array_equal(arrays["mask"], mask_from_spec("radial:25"))
    (run,) = meta["runs"]
    assert run["method"] == "lsq" and run["params"] == {"constraint": "box"} and run["psnr"] == summary["psnr"]
    assert run["history"][-1]["iteration"] == 5
    objective = [row["objective"] for row in run["history"]]
    assert np.all(np.diff(objective) <= 0)  # lsq never increases its objective
    problem = Problem(simulate_measurement(truth, mask_from_spec("radial:25"), 0.05, seed=0))
    np.testing.assert_allclose(arrays["adjoint"], problem.zero_filled()[0, 0].numpy(), atol=1e-6)
    with Image.open(png) as picture:
        assert picture.size == (128, 128) and picture.mode == "L"
        np.testing.assert_allclose(np.asarray(picture) / 255.0, np.clip(image, 0, 1), atol=1 / 255)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_the_app_model_opens_what_recon_writes(capsys, tmp_path, image_file, truth):
    """One format: ``genreg recon --out`` opens as a session, whose simulated measurement is the CLI's, and whose
    run scores the same PSNR against the restored ground truth."""
    out = tmp_path / "tv.h5"
    summary = run_json(capsys, image_file, "--method", "tv", "--iters", "20", "--mask", "radial:13", "--noise",
                       "0.02", "--seed", "4", "--out", out)
    state = ExperimentState()
    sessions.load_session(out, state)
    assert (state.mask_spec, state.sigma, state.seed) == ("radial:13", 0.02, 4)
    np.testing.assert_array_equal(state.image, truth)
    expected = simulate_measurement(truth, mask_from_spec("radial:13"), 0.02, seed=4)
    np.testing.assert_allclose(state.measurement.y.numpy(), expected.y.numpy(), atol=1e-6)
    (record,) = state.results
    assert record.method == "tv" and record.iterations == summary["iterations"]
    assert record.setting["weights"] == summary["weights"]["name"]
    assert float(metrics.psnr(np.clip(record.image, 0, 1), state.image)[0]) == pytest.approx(summary["psnr"], abs=1e-4)
    assert state.image_info.path == str(image_file)  # the app re-reads slices and picks weights from it


def test_out_refuses_other_formats_before_running(capsys, tmp_path, image_file):
    assert main(["recon", str(image_file), "--method", "tv", "--out", str(tmp_path / "r.mat")]) != 0
    assert "use a .npz or .h5 file" in capsys.readouterr().err
    assert not (tmp_path / "r.mat").exists()


def test_kspace_input_without_ground_truth(capsys, tmp_path, image_file, truth):
    mask = mask_from_spec("radial:25")
    measurement = simulate_measurement(truth, mask, 0.0, seed=0)
    centred = np.fft.fftshift(measurement.y[0, 0].numpy())
    path = tmp_path / "kspace.npz"
    np.savez(path, kspace=centred)
    summary = run_json(capsys, "--kspace", path, "--method", "adjoint", "--out", tmp_path / "r.npz")
    assert summary["psnr"] is None and summary["ssim"] is None
    assert summary["mask"] == "data"
    assert summary["mask_fraction"] == pytest.approx(mask.mean())  # mask = the non-zero pattern
    stored = bundles.read_bundle(tmp_path / "r.npz").arrays
    assert "ground_truth" not in stored
    np.testing.assert_allclose(stored["run1__image"], measurement.zero_filled()[0, 0].numpy(), atol=1e-6)
    with pytest.raises(bundles.SessionError, match="no ground truth"):  # the app needs an image; it says so
        sessions.load_session(tmp_path / "r.npz", ExperimentState())
    # with IMAGE as well, it is the ground truth for the metrics
    summary = run_json(capsys, image_file, "--kspace", path, "--mask", "radial:25", "--method", "tv",
                       "--iters", "30")
    assert summary["psnr"] > 25 and summary["mask"] == "radial:25"


@pytest.mark.slow
def test_tune_reports_the_table(capsys, image_file):
    summary = run_json(capsys, image_file, "--method", "tv", "--tune", "--iters", "40")
    tuning = summary["tuning"]
    assert tuning["parameter"] == "alpha"
    values = [row["value"] for row in tuning["table"]]
    psnrs = [row["psnr"] for row in tuning["table"]]
    assert tuning["best"] == values[int(np.argmax(psnrs))]
    assert summary["params"]["alpha"] == tuning["best"]
    assert summary["psnr"] == pytest.approx(max(psnrs), abs=1e-6)
    assert main(["recon", str(image_file), "--method", "tv", "--tune", "--iters", "20", "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert sum(line.startswith("alpha = ") for line in lines) == len(values)
    assert sum(line.endswith("<- best") for line in lines) == 1


def test_progress_and_text_summary(capsys, image_file):
    assert main(["recon", str(image_file), "--method", "lsq", "--iters", "3", "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert "lsq (constraint=box): PSNR" in captured.out
    assert "3/3" in captured.err  # the tqdm bar on stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--param", "alpha=-1"], "must be >= 0.0"),
        (["--param", "alpha=abc"], "expects float"),
        (["--param", "beta=1"], "has no parameter 'beta'"),
        (["--param", "alpha"], "NAME=VALUE"),
        (["--method", "nope"], "unknown method 'nope'"),
        (["--mask", "radial:x"], "number of spokes"),
        (["--mask", "spiral:3"], "unknown mask spec"),
        (["--noise", "-1"], "--noise"),
        (["--iters", "0"], "--iters"),
        (["--method", "adjoint", "--tune"], "no main parameter"),
    ],
)
def test_user_errors_exit_2_with_one_line(capsys, image_file, args, message):
    assert main(["recon", str(image_file), "--json", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("genreg recon: error:") and message in err
    assert "Traceback" not in err and len(err.splitlines()) == 1


def test_input_errors(capsys, tmp_path):
    assert main(["recon", str(tmp_path / "missing.npy")]) == 2
    assert main(["recon"]) == 2
    np.save(tmp_path / "real.npy", np.ones((8, 8)))
    assert main(["recon", "--kspace", str(tmp_path / "real.npy")]) == 2
    np.save(tmp_path / "zeros.npy", np.zeros((8, 8), dtype=np.complex64))
    assert main(["recon", "--kspace", str(tmp_path / "zeros.npy")]) == 2
    err = capsys.readouterr().err
    assert "missing.npy" in err and "--kspace" in err and "complex" in err and "samples nothing" in err
    assert "Traceback" not in err


def test_key_picks_the_dataset_of_an_ambiguous_hdf5_file(capsys, tmp_path, image_file, truth):
    import h5py

    with h5py.File(tmp_path / "two.h5", "w") as f:
        f["scan_a"] = np.load(image_file)
        f["scan_b"] = np.zeros((128, 128), np.float32)
    assert main(["recon", str(tmp_path / "two.h5"), "--method", "adjoint", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "--key NAME" in err and "scan_a" in err
    summary = run_json(capsys, tmp_path / "two.h5", "--key", "scan_a", "--method", "adjoint")
    reference = run_json(capsys, image_file, "--method", "adjoint")
    assert summary["psnr"] == pytest.approx(reference["psnr"])


@pytest.mark.slow
def test_json_notes_say_which_variational_network_ran(capsys, image_file):
    summary = run_json(capsys, image_file, "--mask", "radial:27", "--noise", "0.05", "--method", "varnet")
    assert summary["notes"]["trained_setting"] == "radial25-sigma0.05"
    assert summary["notes"]["exact_setting"] is False


@pytest.mark.parametrize("iters", ["1000", "30"])  # converges early / runs out of iterations
def test_progress_bar_ends_with_one_full_line(capsys, image_file, iters):
    assert main(["recon", str(image_file), "--method", "tv", "--iters", iters]) == 0
    lines = capsys.readouterr().err.replace("\r", "\n").splitlines()
    finished = [line for line in lines if line.startswith("tv: 100%")]
    assert len(finished) == 1, lines


def test_progress_bar_names_the_posterior_sampling_phase(capsys, image_file):
    args = ["recon", str(image_file), "--method", "mean+diagonal", "--iters", "3", "--weights", "phantom"]
    assert main([*args, "--param", "posterior_samples=2"]) == 0
    assert "mean+diagonal (last step: std map, 2 samples): 100%" in capsys.readouterr().err
    assert main([*args, "--param", "posterior_samples=0"]) == 0
    assert "mean+diagonal: 100%" in capsys.readouterr().err


def test_info_describes_a_result_bundle(capsys, tmp_path, image_file):
    out = tmp_path / "lsq.npz"
    summary = run_json(capsys, image_file, "--method", "lsq", "--iters", "4", "--out", out)
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "genreg-viewer results bundle, 1 run" in text and "mask radial:25, sigma 0.05, seed 0" in text
    assert "run 1: lsq (" in text and f"PSNR {summary['psnr']:.2f} dB" in text and "4 iterations" in text
    assert main(["info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["runs"][0]["psnr"] == summary["psnr"] and info["has_ground_truth"]
    assert {a["name"] for a in info["arrays"]} == {"ground_truth", "mask", "adjoint", "run1__image"}
