"""Hostile inputs, round 3 (issue 22): output paths, slice sets, weight folders, tuned and calibration tables,
bundles. Every case ends in one clear line (an exception, or CLI exit status 2) or a correct result; never a NaN
reported with exit 0, a traceback, a hang or a device replaced by a file. Files are generated here and tiny."""

from __future__ import annotations

import os
import re
import stat
import struct
from pathlib import Path

import numpy as np
import pytest

from genreg_viewer.cli.main import main

pytest_plugins = ["gui_helpers"]  # the window and errors fixtures


@pytest.fixture
def image_file(tmp_path):
    path = tmp_path / "image.npy"
    yy, xx = np.mgrid[:64, :64]
    np.save(path, (0.5 + 0.4 * np.sin(xx / 5.0)).astype(np.float32))
    return path


def cli_error(capsys, args: list[str]) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


# ------------------------------------------------------------------------------------------------ output paths
def special_outputs(tmp_path: Path) -> dict[str, Path]:
    """A FIFO, a link to /dev/null and (where mknod is allowed, e.g. as root) a copy of /dev/zero."""
    paths = {"fifo": tmp_path / "fifo.csv", "null-link": tmp_path / "null.csv"}
    os.mkfifo(paths["fifo"])
    paths["null-link"].symlink_to(os.devnull)
    try:
        os.mknod(tmp_path / "zero.csv", stat.S_IFCHR | 0o666, os.makedev(1, 5))
        paths["zero-copy"] = tmp_path / "zero.csv"
    except (OSError, AttributeError):
        pass
    return paths


def assert_untouched(paths: dict[str, Path]) -> None:
    assert stat.S_ISFIFO(os.stat(paths["fifo"]).st_mode)
    assert paths["null-link"].is_symlink() and os.readlink(paths["null-link"]) == os.devnull
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)
    if "zero-copy" in paths:
        assert stat.S_ISCHR(os.stat(paths["zero-copy"]).st_mode)
    assert not [p for p in paths["fifo"].parent.iterdir() if p.name.startswith(".")]  # no temporary left


@pytest.mark.parametrize("kind", ["train vae", "train covariance"])
def test_a_training_out_folder_that_is_a_device_fifo_or_file_is_refused_before_training(tmp_path, capsys, kind):
    """``genreg train vae|covariance --out DIR`` writes a folder: a device, FIFO or file there (or on the way) is
    refused in one line before the first epoch, and left as it was."""
    paths = special_outputs(tmp_path)
    plain = tmp_path / "plain.txt"
    plain.write_text("keep")
    extra = ["--vae", str(tmp_path / "stage1")] if kind == "train covariance" else []
    cases = {os.devnull: "is a device", str(paths["fifo"]): "is a FIFO", str(plain): "is a file",
             str(plain / "sub"): "is not a folder"}
    for out, message in cases.items():
        err = cli_error(capsys, [*kind.split(), "phantom:2", *extra, "--out", out, "--epochs", "1"])
        assert message in err and "epoch" not in err, err
    assert plain.read_text() == "keep"
    assert_untouched(paths)


def test_a_results_csv_too_large_to_resume_is_refused_before_reading(tmp_path, capsys):
    """A (sparse) 300 MiB --out CSV with the right header: refused in one line from its size, never read."""
    from genreg_viewer.data.limits import MAX_RESULTS_CSV_BYTES
    from genreg_viewer.evaluation.evaluate import CSV_COLUMNS

    out = tmp_path / "results.csv"
    out.write_text(",".join(CSV_COLUMNS) + "\n")
    os.truncate(out, MAX_RESULTS_CSV_BYTES + 2**20)
    err = cli_error(capsys, ["evaluate", "phantom:1", "--methods", "adjoint", "--out", str(out)])
    assert "MiB" in err and "another --out" in err, err
    assert out.stat().st_size == MAX_RESULTS_CSV_BYTES + 2**20


def test_the_atomic_writer_never_replaces_a_device_or_fifo(tmp_path):
    from genreg_viewer.fileio import atomic_write_text, check_writable

    paths = special_outputs(tmp_path)
    for path in paths.values():
        with pytest.raises(ValueError, match=r"--out .* is a (device|FIFO), not a regular file") as info:
            check_writable(path, "--out")
        assert "\n" not in str(info.value)
        with pytest.raises(OSError, match="not a regular file"):
            atomic_write_text(path, "x")
    assert_untouched(paths)


@pytest.mark.parametrize("option", ["--out", "--png"])
def test_recon_refuses_special_outputs_before_the_reconstruction(capsys, image_file, tmp_path, monkeypatch, option):
    from genreg_viewer.cli.commands import recon

    def refuse(*args, **kwargs):
        raise AssertionError("the reconstruction ran before the output was checked")

    monkeypatch.setattr(recon, "run_method", refuse)
    paths = special_outputs(tmp_path)
    for path in paths.values():
        err = cli_error(capsys, ["recon", str(image_file), "--method", "tv", "--device", "cpu", option, str(path)])
        assert option in err and "not a regular file" in err
    assert_untouched(paths)


def test_evaluate_refuses_a_special_out_and_creates_a_missing_folder(capsys, tmp_path):
    args = ["evaluate", "phantom:2", "--methods", "adjoint", "--mask", "radial:25", "--noise", "0.05",
            "--device", "cpu", "--quiet"]
    paths = special_outputs(tmp_path)
    for path in paths.values():  # the copy of /dev/zero was read without end before
        err = cli_error(capsys, [*args, "--out", str(path)])
        assert "--out" in err and "not a regular file" in err
    assert_untouched(paths)
    out = tmp_path / "missing" / "deeper" / "r.csv"  # failed after the work before (the part file had no folder)
    assert main([*args, "--out", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert len(lines) == 3 and lines[0].startswith("data,image") and not list(out.parent.glob("*.part-*"))


def test_evaluate_refuses_a_part_file_that_is_a_fifo(capsys, tmp_path):
    out = tmp_path / "r.csv"
    os.mkfifo(tmp_path / "r.csv.part-0")
    err = cli_error(capsys, ["evaluate", "phantom:2", "--methods", "adjoint", "--reference", "adjoint",
                             "--device", "cpu", "--quiet", "--out", str(out)])
    assert "r.csv.part-0 is a FIFO" in err


# ------------------------------------------------------------------------------------------------ slice sets
def slice_set(path: Path, images=None, **datasets) -> Path:
    """A slice set in the layout of ``genreg dataset build``; ``datasets`` replace or add entries (a callable is
    called with the open file)."""
    import h5py

    images = np.full((2, 128, 128), 0.5, np.float32) if images is None else images
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "genreg-slice-set"
        entries = {"images": images, "volume": np.array(["a.h5", "b.h5"], dtype=object),
                   "slice": np.array([3, 4], np.int32), **datasets}
        for name, value in entries.items():
            if callable(value):
                value(f, name)
            elif value is not None:
                dtype = h5py.string_dtype("utf-8") if value.dtype.kind == "O" else None
                f.create_dataset(name, data=value, dtype=dtype)
    return path


@pytest.fixture
def secret(tmp_path):
    path = tmp_path / "secret.txt"
    path.write_bytes(b"root:x:0:0:root:/root:/bin/bash\n" * 1024)  # 32 KiB, more than 2 x 128 x 128 bytes
    return path


def hostile_slice_sets(tmp_path: Path, secret: Path) -> dict[str, tuple[Path, str]]:
    import h5py

    other = slice_set(tmp_path / "other.h5")

    def external(f, name):
        f.create_dataset(name, shape=(2, 128, 128), dtype="u1", external=[(str(secret), 0, 2 * 128 * 128)])

    def virtual(f, name):
        layout = h5py.VirtualLayout(shape=(2, 128, 128), dtype="f4")
        layout[:] = h5py.VirtualSource(str(other), "images", shape=(2, 128, 128))
        f.create_virtual_dataset(name, layout)

    def linked(f, name):
        f[name] = h5py.ExternalLink(str(other), "images")

    def soft(f, name):
        f.create_dataset("elsewhere", data=np.zeros((2, 128, 128), np.float32))
        f[name] = h5py.SoftLink("/elsewhere")

    def volume_link(f, name):
        f[name] = h5py.ExternalLink(str(other), "volume")

    return {
        "external": (slice_set(tmp_path / "external.h5", images=external), "external files"),
        "virtual": (slice_set(tmp_path / "virtual.h5", images=virtual), "virtual dataset"),
        "external-link": (slice_set(tmp_path / "linked.h5", images=linked), "link to another file"),
        "soft-link": (slice_set(tmp_path / "soft.h5", images=soft), "link to elsewhere"),
        "volume-link": (slice_set(tmp_path / "volume.h5", volume=volume_link), "'volume' .* link to another file"),
        "complex": (slice_set(tmp_path / "complex.h5", images=np.full((2, 128, 128), 0.5 + 0.5j, np.complex64)),
                    "are complex64; expected real numbers"),
    }


def test_slice_sets_read_only_their_own_data(tmp_path, secret):
    from genreg_viewer.data.dataset import load_slice_set
    from genreg_viewer.data.errors import DataError

    for name, (path, message) in hostile_slice_sets(tmp_path, secret).items():
        with pytest.raises(DataError, match=message) as info:
            load_slice_set(path)
        assert "\n" not in str(info.value) and str(path) in str(info.value), name
    assert load_slice_set(tmp_path / "other.h5").shape == (2, 128, 128)


@pytest.mark.parametrize("command", ["evaluate", "train", "calibrate"])
def test_commands_refuse_slice_sets_that_read_other_files(capsys, tmp_path, secret, command):
    sets = hostile_slice_sets(tmp_path, secret)
    for name in ("external", "virtual", "external-link"):
        path, message = sets[name]
        out = tmp_path / f"{command}-{name}"
        args = {
            "evaluate": ["evaluate", str(path), "--methods", "adjoint", "--device", "cpu", "--quiet",
                         "--out", str(out) + ".csv"],
            "train": ["train", "vae", str(path), "--held-out", str(tmp_path / "other.h5"), "--epochs", "1",
                      "--device", "cpu", "--out", str(out)],
            "calibrate": ["calibrate", str(path), "--device", "cpu", "--report", str(out) + ".json"],
        }[command]
        err = cli_error(capsys, args)
        assert str(path) in err and re.search(message, err), err
        assert not list(tmp_path.glob(f"{command}-*")), "nothing is written"


@pytest.mark.parametrize("volume, slices, message", [
    (np.array([1.0, 2.0]), np.array([3, 4], np.int32), "'volume' must hold strings"),
    (np.array(["a.h5"], dtype=object), np.array([3, 4], np.int32), "one entry per image"),
    (np.array(["a.h5", "b.h5"], dtype=object), np.zeros((2, 2), np.int32), "one entry per image"),
])
def test_malformed_slice_set_sources_are_one_line(tmp_path, volume, slices, message):
    from genreg_viewer.data.dataset import load_slice_set_sources
    from genreg_viewer.data.errors import DataError

    path = slice_set(tmp_path / "set.h5", volume=volume, slice=slices)
    with pytest.raises(DataError, match=message):
        load_slice_set_sources(path)
    assert load_slice_set_sources(slice_set(tmp_path / "ok.h5")) == [("a.h5", 3), ("b.h5", 4)]


# ------------------------------------------------------------------------------------------------ weights folders
SAMPLE = str(Path(__file__).resolve().parents[1] / "resources" / "samples" / "knee_phantom_001.npy")


def weights_folder(tmp_path: Path, *names: str) -> Path:
    """A weight-set folder holding copies of the bundled phantom networks ``names``."""
    import shutil

    from genreg_viewer.weight_sets import BUNDLED_SETS

    folder = tmp_path / "weights"
    folder.mkdir(exist_ok=True)
    for name in names:
        for suffix in (".safetensors", ".json"):
            shutil.copy(BUNDLED_SETS["phantom"] / f"{name}{suffix}", folder / f"{name}{suffix}")
    return folder


def edit_tensor(folder: Path, name: str, edit) -> str:
    """Replace the first floating-point matrix of ``folder/name`` by ``edit(tensor)``; returns its name."""
    import torch
    from safetensors.torch import load_file, save_file

    path = folder / f"{name}.safetensors"
    state = load_file(str(path))
    key = next(k for k, t in state.items() if t.is_floating_point() and t.ndim > 1)
    state[key] = edit(state[key].float())
    save_file({k: t.contiguous() for k, t in state.items()}, str(path), metadata={"format": "genreg-weights"})
    assert isinstance(state[key], torch.Tensor)
    return key


def edit_config(folder: Path, name: str, **changes) -> None:
    import json

    path = folder / f"{name}.json"
    document = json.loads(path.read_text())
    document["config"].update(changes)
    path.write_text(json.dumps(document))


TENSOR_EDITS = {
    "nan": (lambda t: t.clone().fill_(float("nan")), "NaN or infinite values"),
    "inf": (lambda t: t.clone().fill_(float("inf")), "NaN or infinite values"),
    "huge": (lambda t: t.clone().fill_(3e38), "magnitude 3e\\+38, beyond the limit"),
    "int8": (lambda t: t.to(dtype=__import__("torch").int8), "is int8; networks store floating-point"),
    "bool": (lambda t: t > 0, "is bool; networks store floating-point"),
}


@pytest.mark.parametrize("case", list(TENSOR_EDITS))
def test_weights_holding_nan_inf_huge_int8_or_bool_are_refused_when_loaded(capsys, tmp_path, case):
    from genreg_viewer.models.weights import WeightsError, load_weights

    edit, message = TENSOR_EDITS[case]
    folder = weights_folder(tmp_path, "vae_identity")
    key = edit_tensor(folder, "vae_identity", edit)
    with pytest.raises(WeightsError, match=message) as info:
        load_weights(folder / "vae_identity")
    assert key in str(info.value) and "\n" not in str(info.value)
    err = cli_error(capsys, ["recon", SAMPLE, "--method", "mean+identity", "--device", "cpu", "--weights",
                             str(folder), "--json"])
    assert re.search(message, err) and "vae_identity.safetensors" in err
    assert capsys.readouterr().out == ""  # no NaN summary


def test_a_float_weight_from_an_integer_tensor_of_the_same_shape_is_refused(tmp_path):
    import torch

    from genreg_viewer.models.weights import WeightsError, load_state_into

    module = torch.nn.Linear(2, 2)
    state = {"weight": torch.ones(2, 2, dtype=torch.int64), "bias": torch.zeros(2)}
    with pytest.raises(WeightsError, match="'weight' is int64, the network holds float32"):
        load_state_into(module, state, "crafted.safetensors")


@pytest.mark.parametrize("changes, message", [
    ({"identity_rho": 1e-300}, "identity_rho must lie in"),
    ({"identity_rho": 1e300}, "identity_rho must lie in"),
    ({"log_diag_min": -700.0}, "log_diag_min and log_diag_max must lie in"),
    ({"log_diag_max": 700.0}, "log_diag_min and log_diag_max must lie in"),
])
def test_vae_configs_that_always_overflow_are_refused(capsys, tmp_path, changes, message):
    folder = weights_folder(tmp_path, "vae_identity")
    edit_config(folder, "vae_identity", **changes)
    err = cli_error(capsys, ["recon", SAMPLE, "--method", "mean+identity", "--device", "cpu", "--weights",
                             str(folder), "--json"])
    assert message in err and "vae_identity.json" in err


@pytest.mark.parametrize("changes, message", [
    ({"bound": float("nan")}, "bound .* must be a number in \\(0, 4\\]"),
    ({"bound": -1.0}, "bound .* must be a number in \\(0, 4\\]"),
    ({"layers": 100000}, "layers must be an integer in \\[2, 64\\]"),
    ({"channels": 10**9}, "channels must be an integer in \\[1, 512\\]"),
    ({"layers": 6.5}, "layers must be an integer"),
])
def test_dncnn_configs_out_of_bounds_are_refused(capsys, tmp_path, changes, message):
    folder = weights_folder(tmp_path, "dncnn")
    edit_config(folder, "dncnn", **changes)
    err = cli_error(capsys, ["recon", SAMPLE, "--method", "pnp-admm", "--device", "cpu", "--weights", str(folder),
                             "--json"])
    assert re.search(message, err) and "dncnn.json" in err


# ------------------------------------------------------------------------------------------------ diverged results
@pytest.mark.slow
def test_a_diverging_run_is_an_error_not_a_nan_score(capsys):
    """narnhofer19 with a decoder learning rate inside its declared bounds (1.0) diverges to NaN: exit 2, no JSON."""
    err = cli_error(capsys, ["recon", SAMPLE, "--method", "narnhofer19", "--device", "cpu", "--json", "--iters", "30",
                             "--param", "weight_learning_rate=1", "--param", "z_iterations=5"])
    assert "narnhofer19 diverged: NaN or infinite values in its image" in err
    assert capsys.readouterr().out == ""


def nan_method(monkeypatch):
    """``adjoint`` made to return NaN images (what a diverging method does), for the other entry points."""
    import torch

    from genreg_viewer.recon import get_method

    cls = type(get_method("adjoint"))
    original = cls.iterate

    def iterate(self, problem, params, total):
        for step in original(self, problem, params, total):
            step.image = torch.full_like(step.image, float("nan"))
            yield step

    monkeypatch.setattr(cls, "iterate", iterate)


def test_evaluate_stops_on_a_diverged_run_and_writes_no_nan_row(capsys, tmp_path, monkeypatch):
    nan_method(monkeypatch)
    out = tmp_path / "r.csv"
    assert main(["evaluate", "phantom:2", "--methods", "adjoint", "--reference", "adjoint", "--device", "cpu",
                 "--quiet", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("genreg evaluate: error: adjoint diverged: NaN or infinite values in its image")
    assert not out.exists() and not list(tmp_path.glob("r.csv.part-*"))


def test_evaluate_computes_nan_rows_of_a_resumed_csv_again(capsys, tmp_path):
    from genreg_viewer.evaluation.evaluate import read_rows

    out = tmp_path / "r.csv"
    args = ["evaluate", "phantom:2", "--methods", "adjoint", "--reference", "adjoint", "--device", "cpu", "--quiet",
            "--out", str(out), "--json"]
    assert main(args) == 0
    lines = out.read_text().splitlines()
    fields = lines[1].split(",")
    fields[9] = fields[10] = "nan"  # psnr, ssim
    out.write_text("\n".join([lines[0], ",".join(fields), lines[2]]) + "\n")
    assert len(read_rows(out)) == 1
    capsys.readouterr()
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "nan" not in out.read_text().lower() and "NaN" not in captured.out and len(read_rows(out)) == 2
    scores = [(row["image"], row["psnr"], row["ssim"]) for row in read_rows(out)]
    assert scores == [(line.split(",")[1], line.split(",")[9], line.split(",")[10]) for line in lines[1:]]


def test_the_app_job_refuses_a_diverged_run(monkeypatch):
    import threading

    import torch

    from genreg_viewer.application.jobs import ReconJob, run_job
    from genreg_viewer.physics import Measurement, MRIOperator, radial_mask
    from genreg_viewer.recon import NonFiniteResultError

    nan_method(monkeypatch)
    operator = MRIOperator(radial_mask(8, (32, 32)))
    truth = torch.full((1, 1, 32, 32), 0.5)
    measurement = Measurement(y=operator.forward(truth), operator=operator, sigma=0.01, seed=0)
    job = ReconJob(job_id=1, method="adjoint", title="Adjoint", params={}, iterations=1, device="cpu",
                   measurement=measurement, ground_truth=truth, seed=0, setting={}, cancel=threading.Event())
    with pytest.raises(NonFiniteResultError, match="adjoint diverged"):
        run_job(job, lambda update: None)


# ------------------------------------------------------------------------------------------------ calibration tables
def calibration_entry(**changes) -> dict:
    return {"mask": "radial:25", "sigma": 0.05, "scale": 0.9, "fitted_on": "val.h5, 4 images", "fitted_for_k": [2.0],
            **changes}


def calibrated_set(tmp_path: Path, table) -> Path:
    import json

    folder = weights_folder(tmp_path, "vae_identity", "vae_covar")
    (folder / "tuned").mkdir()
    text = table if isinstance(table, str) else json.dumps(table)
    (folder / "tuned" / "calibration.json").write_text(text)
    return folder


BAD_TABLES = {
    "scale nan": ({"mean+covar": [calibration_entry(scale=float("nan"))]}, "'scale' must be a positive finite"),
    "scale inf": ({"mean+covar": [calibration_entry(scale=float("inf"))]}, "'scale' must be a positive finite"),
    "scale -2": ({"mean+covar": [calibration_entry(scale=-2)]}, "'scale' must be a positive finite"),
    "scale 0": ({"mean+covar": [calibration_entry(scale=0)]}, "'scale' must be a positive finite"),
    "scale text": ({"mean+covar": [calibration_entry(scale="big")]}, "'scale' must be a positive finite"),
    "no scale": ({"mean+covar": [{"mask": "radial:25", "sigma": 0.05}]}, "'scale' must be"),
    "sigma": ({"mean+covar": [calibration_entry(sigma=1e400)]}, "'sigma' must be a number"),
    "entries": ({"mean+covar": {"mask": "radial:25"}}, "entries of 'mean\\+covar' must be a list"),
    "entry": ({"mean+covar": [7]}, "an entry must be a JSON object"),
    "shape": ({"mean+covar": [calibration_entry(shape=[100000, 100000])]}, "'shape' must be two integers"),
    "k": ({"mean+covar": [calibration_entry(fitted_for_k="2")]}, "'fitted_for_k' must be a list"),
    "many": ({"mean+covar": [calibration_entry(sigma=0.01 + i * 1e-5) for i in range(20000)]},
             "more than 512 entries"),
    "deep": ("[" * 100000 + "]" * 100000, "nested too deeply"),
    "not json": ("{", "not a readable calibration table"),
}


@pytest.mark.parametrize("case", list(BAD_TABLES))
def test_malformed_calibration_tables_are_one_line_naming_the_file(tmp_path, case):
    import time

    from genreg_viewer.evaluation.calibration import std_scale_for_run
    from genreg_viewer.weight_sets import resolve_weight_set

    table, message = BAD_TABLES[case]
    folder = calibrated_set(tmp_path, table)
    start = time.perf_counter()
    with pytest.raises(ValueError, match=message) as info:
        std_scale_for_run("mean+covar", "radial:25", 0.05, weight_set=resolve_weight_set(str(folder)))
    assert "calibration.json" in str(info.value) and "\n" not in str(info.value)
    assert time.perf_counter() - start < 5


@pytest.mark.parametrize("scale", [float("nan"), float("inf"), -2, 0])
def test_recon_refuses_a_bad_calibration_scale_before_the_run(capsys, tmp_path, monkeypatch, scale):
    from genreg_viewer.cli.commands import recon

    monkeypatch.setattr(recon, "run_method", lambda *a, **k: pytest.fail("the run started"))
    folder = calibrated_set(tmp_path, {"mean+covar": [calibration_entry(scale=scale)]})
    err = cli_error(capsys, ["recon", SAMPLE, "--method", "mean+covar", "--device", "cpu", "--weights", str(folder),
                             "--calibrated-std", "--json"])
    assert "'scale' must be a positive finite number" in err and "calibration.json" in err
    assert capsys.readouterr().out == ""


def test_calibration_entries_naming_a_fifo_mask_do_not_block(tmp_path):
    from genreg_viewer.evaluation.calibration import std_scale_for_run
    from genreg_viewer.weight_sets import resolve_weight_set

    fifo = tmp_path / "mask.npy"
    os.mkfifo(fifo)
    folder = calibrated_set(tmp_path, {"mean+covar": [calibration_entry(mask=str(fifo)), calibration_entry()]})
    found = std_scale_for_run("mean+covar", "radial:25", 0.05, weight_set=resolve_weight_set(str(folder)))
    assert found is not None and found.scale == 0.9 and found.exact


@pytest.mark.parametrize("kind", ["fifo", "stdin"])
def test_mask_and_image_files_that_are_fifos_or_devices_are_refused(capsys, tmp_path, kind):
    if kind == "fifo":
        path = tmp_path / "m.npy"
        os.mkfifo(path)
    else:
        path = Path("/dev/stdin")
        if not path.exists() or Path(os.path.realpath(path)).is_file():
            pytest.skip("no /dev/stdin device here")
    err = cli_error(capsys, ["recon", SAMPLE, "--method", "adjoint", "--device", "cpu", "--mask", str(path)])
    assert "not a regular file" in err
    if kind == "fifo":
        image = tmp_path / "image.npy"
        os.mkfifo(image)
        err = cli_error(capsys, ["recon", str(image), "--method", "adjoint", "--device", "cpu"])
        assert "is a FIFO, not a regular file" in err


@pytest.mark.parametrize("dtype", ["U3", "M8[s]", [("a", "<f4"), ("b", "<f4")]])
def test_mask_files_of_text_dates_or_records_are_refused(tmp_path, dtype):
    from genreg_viewer.physics.masks import MaskError, load_mask

    path = tmp_path / "mask.npy"
    np.save(path, np.zeros((128, 128), dtype=dtype))
    with pytest.raises(MaskError, match="a mask is boolean or numeric"):
        load_mask(path, (128, 128))


# ------------------------------------------------------------------------------------------------ bundles
@pytest.fixture
def session_folder(qapp, tmp_path):
    """``(state, folder)``: a 32 x 32 session with one run saved as a folder bundle."""
    from genreg_viewer.application import ExperimentState, ImageInfo, RunRecord
    from genreg_viewer.application import sessions
    from genreg_viewer.physics import radial_mask

    state = ExperimentState(shape=(32, 32))
    yy, xx = np.mgrid[:32, :32]
    image = (0.5 + 0.4 * np.sin(xx / 5.0) * np.cos(yy / 7.0)).astype(np.float32)
    state.set_image(image, ImageInfo(source="test image"))
    state.set_mask(radial_mask(8, (32, 32)), "radial:8")
    state.set_noise(0.02, 3)
    state.add_result(RunRecord(run_id=1, method="adjoint", title="Adjoint", image=image * 0.9, params={},
                               iterations=1, seconds=0.1, device="cpu", psnr=20.0, ssim=0.5, setting=state.setting()))
    folder = tmp_path / "session"
    sessions.save_session(folder, state, {"comparison": {"window": [0.0, 1.0]}})
    return state, folder


def edit_session(folder: Path, change) -> None:
    import json

    meta_file = folder / "session.json"
    text = meta_file.read_text()
    meta = json.loads(text)
    change(meta)
    meta_file.write_text(json.dumps(meta))


HUGE = 10**309  # json writes it as an integer; float() of it overflows

HUGE_NUMBERS = {
    "psnr": lambda m: m["runs"][0].update(psnr=HUGE),
    "seconds": lambda m: m["runs"][0].update(seconds=HUGE),
    "sigma": lambda m: m.update(sigma=HUGE),
    "window": lambda m: m["gui"]["comparison"].update(window=[0, HUGE]),
}


@pytest.mark.parametrize("case", list(HUGE_NUMBERS))
def test_integers_beyond_a_double_in_a_session_are_one_line(session_folder, case):
    from genreg_viewer.application import ExperimentState
    from genreg_viewer.application.bundles import SessionError
    from genreg_viewer.application.sessions import load_session

    state, folder = session_folder
    edit_session(folder, HUGE_NUMBERS[case])
    fresh = ExperimentState(shape=(32, 32))
    with pytest.raises(SessionError, match="within the range of a double") as info:
        load_session(folder, fresh)
    assert "\n" not in str(info.value) and fresh.results == []


WRONG_TYPES = {
    "image_info list": (lambda m: m.update(image_info=[1, 2]), "image_info must be an object"),
    "image_info.source": (lambda m: m.update(image_info={"source": 5}), "image_info.source must be a string"),
    "run not a dict": (lambda m: m.update(runs=[5]), "runs\\[0\\] must be an object"),
    "runs dict": (lambda m: m.update(runs={"a": 1}), "runs must be a list"),
    "psnr text": (lambda m: m["runs"][0].update(psnr="high"), "runs\\[0\\].psnr must be a number"),
    "seconds list": (lambda m: m["runs"][0].update(seconds=[1]), "runs\\[0\\].seconds must be a number"),
    "iterations": (lambda m: m["runs"][0].update(iterations="x"), "runs\\[0\\].iterations must be an integer"),
    "extras": (lambda m: m["runs"][0].update(extras="std_map"), "runs\\[0\\].extras must be a list"),
    "sigma": (lambda m: m.update(sigma={"a": 1}), "sigma must be a number"),
    "seed": (lambda m: m.update(seed="x"), "seed must be an integer"),
    "mask_spec": (lambda m: m.update(mask_spec=[1]), "mask_spec must be a string"),
    "kind": (lambda m: m.update(kind=3), "kind must be 'session' or 'results'"),
    "huge psnr": (lambda m: m["runs"][0].update(psnr=HUGE), "within the range of a double"),
}


@pytest.mark.parametrize("case", list(WRONG_TYPES))
def test_info_on_bundle_metadata_of_the_wrong_type_is_one_line(capsys, session_folder, case):
    change, message = WRONG_TYPES[case]
    _, folder = session_folder
    edit_session(folder, change)
    err = cli_error(capsys, ["info", str(folder)])
    assert re.search(message, err) and "session" in err


def test_info_describes_a_valid_bundle(capsys, session_folder):
    _, folder = session_folder
    assert main(["info", str(folder)]) == 0
    assert "run 1: adjoint (Adjoint), PSNR 20.00 dB" in capsys.readouterr().out


def test_a_session_smaller_than_the_ssim_window_is_refused_before_the_state_changes(session_folder):
    from genreg_viewer.application import ExperimentState
    from genreg_viewer.application.bundles import SessionError
    from genreg_viewer.application.sessions import load_session, save_session

    state, folder = session_folder
    small = ExperimentState(shape=(32, 32))
    small.set_image(np.full((8, 8), 0.5, np.float32), state.image_info)
    small.set_mask(np.ones((8, 8), bool), "full")
    save_session(folder.parent / "small", small)
    with pytest.raises(SessionError, match="sides from 11 \\(the SSIM window\\)"):
        load_session(folder.parent / "small", state)
    assert state.image.shape == (32, 32) and [r.run_id for r in state.results] == [1]


@pytest.mark.parametrize("kind", ["session.json fifo", "bundle fifo", "dangling link"])
def test_sessions_that_are_fifos_or_dangling_links_are_refused(capsys, tmp_path, kind):
    from genreg_viewer.application import ExperimentState
    from genreg_viewer.application.bundles import SessionError
    from genreg_viewer.application.sessions import load_session

    if kind == "session.json fifo":
        path = tmp_path / "session"
        path.mkdir()
        os.mkfifo(path / "session.json")
        message = "session.json is not a regular file"
    elif kind == "bundle fifo":
        path = tmp_path / "run.npz"
        os.mkfifo(path)
        message = "is a FIFO, not a regular file"
    else:
        path = tmp_path / "run.npz"
        path.symlink_to(tmp_path / "gone.npz")
        message = "is a link to .*gone.npz, which does not exist"
    err = cli_error(capsys, ["info", str(path)])
    assert re.search(message, err)
    if kind != "dangling link":
        with pytest.raises(SessionError, match="not a regular file"):
            load_session(path, ExperimentState(shape=(32, 32)))


# ------------------------------------------------------------------------------------------------ weight sets
@pytest.mark.parametrize("manifest, message", [
    ({"fallback": ["phantom"]}, "fallback must be null or one of"),
    ({"fallback": {"a": 1}}, "fallback must be null or one of"),
    ({"name": 5}, "name must be text"),
    ("[" * 100000 + "]" * 100000, "nests too deeply"),
    ("[1]", "not a JSON object"),
])
def test_malformed_weightset_json_is_one_line(capsys, tmp_path, manifest, message):
    import json

    folder = weights_folder(tmp_path, "dncnn")
    (folder / "weightset.json").write_text(manifest if isinstance(manifest, str) else json.dumps(manifest))
    err = cli_error(capsys, ["recon", SAMPLE, "--method", "adjoint", "--device", "cpu", "--weights", str(folder)])
    assert message in err and "weightset.json" in err


def test_a_bad_genreg_weights_is_refused_by_the_cli_and_survived_by_the_library(capsys, caplog, monkeypatch):
    from genreg_viewer import weight_sets

    monkeypatch.setenv("GENREG_WEIGHTS", "/nonexistent")
    monkeypatch.setattr(weight_sets, "_AUTO", None)
    monkeypatch.setattr(weight_sets, "_ACTIVE", None)
    err = cli_error(capsys, ["recon", SAMPLE, "--method", "adjoint", "--device", "cpu"])
    assert err.startswith("genreg recon: error: GENREG_WEIGHTS: unknown weight set '/nonexistent'")
    assert weight_sets.active_weight_set().name == "phantom" and weight_sets.is_auto()  # the app starts
    # ... and says why (a logging warning: on stderr when nothing else is configured)
    assert any("GENREG_WEIGHTS" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)


@pytest.mark.slow
def test_the_app_starts_with_a_bad_genreg_weights(monkeypatch, request):
    from genreg_viewer import weight_sets

    monkeypatch.setenv("GENREG_WEIGHTS", "/nonexistent")
    monkeypatch.setattr(weight_sets, "_AUTO", None)
    monkeypatch.setattr(weight_sets, "_ACTIVE", None)
    win = request.getfixturevalue("window")
    assert win.isVisible() and request.getfixturevalue("errors") == []


# ------------------------------------------------------------------------------------------------ network sizes
@pytest.mark.parametrize("changes, message", [
    ({"widths": [100000, 64, 128]}, "VAE widths must be at most 2048"),
    ({"latent_dim": 10**9}, "VAE latent_dim must be at most 65536"),
    ({"image_size": 2**40}, "VAE image_size must be at most 1024"),
    ({"widths": [32] * 20}, "VAE widths must have at most 8 entries"),
    # inside every bound, but a linear head of 2048 * 512^2 * 65536 weights (128 TiB): refused by its shapes,
    # compared on the meta device before anything is allocated
    ({"image_size": 1024, "patch": 1, "widths": [2048], "coarse_channels": 2048, "latent_dim": 65536},
     "does not match config"),
])
def test_vae_configs_asking_for_huge_networks_are_refused_before_allocating(capsys, tmp_path, changes, message):
    import time

    folder = weights_folder(tmp_path, "vae_identity")
    edit_config(folder, "vae_identity", **changes)
    start = time.perf_counter()
    err = cli_error(capsys, ["recon", SAMPLE, "--method", "mean+identity", "--device", "cpu", "--weights",
                             str(folder), "--json"])
    assert message in err and "vae_identity" in err
    assert time.perf_counter() - start < 20


@pytest.mark.parametrize("name, changes, message", [
    ("varnet-radial25-sigma0.05", {"stages": 10**6}, "stages must be an integer in \\[1, 64\\]"),
    ("varnet-radial25-sigma0.05", {"rbf_count": 10**5}, "rbf_count must be an integer in \\[2, 256\\]"),
    ("edip", {"channels": [16, 10**6]}, "U-Net channels must be 2 to 8 levels"),
    ("dncnn", {"channels": 4096}, "channels must be an integer in \\[1, 512\\]"),
])
def test_learned_network_configs_out_of_bounds_are_refused(tmp_path, name, changes, message):
    import torch

    from genreg_viewer.models.weights import WeightsError
    from genreg_viewer.recon.learned.common import load_network
    from genreg_viewer.recon.learned.dip import _build_unet
    from genreg_viewer.recon.learned.pnp import _build_denoiser
    from genreg_viewer.recon.learned.varnet import _build

    build = {"edip": _build_unet, "dncnn": _build_denoiser}.get(name, _build)
    folder = weights_folder(tmp_path, name)
    edit_config(folder, name, **changes)
    with pytest.raises(WeightsError, match=message) as info:
        load_network(str(folder / name), build, torch.device("cpu"))
    assert f"{name}.json" in str(info.value) and "\n" not in str(info.value)


def test_a_varnet_with_a_negative_noise_sigma_is_one_line(capsys, tmp_path):
    folder = weights_folder(tmp_path, "varnet-radial25-sigma0.05")
    edit_config(folder, "varnet-radial25-sigma0.05", noise_sigma=-0.01)  # divided by zero in the distance before
    stem = folder / "varnet-radial25-sigma0.05"
    err = cli_error(capsys, ["recon", SAMPLE, "--method", "varnet", "--device", "cpu", "--weights", str(folder),
                             "--json"])
    assert "ZeroDivision" not in err and "no variational network weights" in err  # the only one is left out
    weights_folder(tmp_path, "varnet-radial125-sigma0.05")  # a valid one beside it: the method is available
    err = cli_error(capsys, ["recon", SAMPLE, "--method", "varnet", "--device", "cpu", "--weights", str(folder),
                             "--param", f"setting={stem}", "--json"])
    assert "is not a variational network (noise_sigma must be in [0, 10], got -0.01)" in err


@pytest.mark.parametrize("case", ["shape int", "shape null", "deep", "fifo", "huge shape"])
def test_malformed_weight_manifests_are_one_line(tmp_path, case):
    import json

    from genreg_viewer.models.weights import WeightsError, load_weights

    folder = weights_folder(tmp_path, "dncnn")
    meta = folder / "dncnn.json"
    document = json.loads(meta.read_text())
    first = next(iter(document["tensors"]))
    if case == "deep":
        meta.write_text("[" * 100000 + "]" * 100000)
    elif case == "fifo":
        meta.unlink()
        os.mkfifo(meta)
    else:
        document["tensors"][first] = {"shape int": 5, "shape null": None, "huge shape": [2**40]}[case]
        meta.write_text(json.dumps(document))
    message = {"deep": "nests too deeply", "fifo": "is not a regular file"}.get(case, "must be a list of at most 8")
    with pytest.raises(WeightsError, match=message) as info:
        load_weights(folder / "dncnn")
    assert "dncnn.json" in str(info.value) and "\n" not in str(info.value)


# ------------------------------------------------------------------------------------------------ tuned tables
def tuned_set(tmp_path: Path, table) -> Path:
    import json

    folder = weights_folder(tmp_path, "dncnn")
    (folder / "tuned").mkdir()
    (folder / "tuned" / "pnp.json").write_text(table if isinstance(table, str) else json.dumps(table))
    return folder


def pnp_entry(**changes) -> dict:
    return {"sampling_fraction": 0.1, "sigma": 0.05, "params": {"denoiser_sigma": 0.05, "rho": 1.0}, **changes}


BAD_TUNED = {
    "not a dict": ([1, 2], "the table must be a JSON object"),
    "settings": ({"pnp-admm": {"a": 1}}, "the settings of 'pnp-admm' must be a list"),
    "setting": ({"pnp-admm": [3]}, "pnp-admm setting 0 must be a JSON object"),
    "no params": ({"pnp-admm": [{"sampling_fraction": 0.1, "sigma": 0.05}]}, "'params' must be a JSON object"),
    "fraction": ({"pnp-admm": [pnp_entry(sampling_fraction="x")]}, "'sampling_fraction' must be a number"),
    "sigma nan": ({"pnp-admm": [pnp_entry(sigma=float("nan"))]}, "'sigma' must be a number"),
    "param list": ({"pnp-admm": [pnp_entry(params={"rho": [1]})]}, "params.rho must be a finite number"),
    "param huge": ({"pnp-admm": [pnp_entry(params={"rho": 10**400})]}, "params.rho must be a finite number"),
    "param range": ({"pnp-admm": [pnp_entry(params={"rho": -5.0})]}, "pnp-admm setting at sigma 0.05: .*rho"),
    "param unknown": ({"pnp-admm": [pnp_entry(params={"speed": 1})]}, "has no parameter 'speed'"),
    "deep": ("[" * 100000 + "]" * 100000, "nests too deeply"),
}


@pytest.mark.parametrize("case", list(BAD_TUNED))
def test_malformed_tuned_tables_are_one_line_naming_the_file(capsys, tmp_path, case):
    table, message = BAD_TUNED[case]
    folder = tuned_set(tmp_path, table)
    err = cli_error(capsys, ["recon", SAMPLE, "--method", "pnp-admm", "--device", "cpu", "--weights", str(folder),
                             "--iters", "1", "--json"])
    assert re.search(message, err) and "pnp.json" in err, err


# ------------------------------------------------------------------------------------------------ memory
def test_evaluate_makes_only_the_selected_phantoms(capsys, tmp_path, monkeypatch):
    import time

    from genreg_viewer.data import phantom

    made = []
    original = phantom.knee_phantom
    monkeypatch.setattr(phantom, "knee_phantom", lambda seed, size=128: made.append(seed) or original(seed, size))
    out = tmp_path / "r.csv"
    start = time.perf_counter()
    assert main(["evaluate", "phantom:15000", "--images", "1", "--methods", "adjoint", "--reference", "adjoint",
                 "--device", "cpu", "--quiet", "--out", str(out)]) == 0
    assert made == [0] and time.perf_counter() - start < 20
    assert len(out.read_text().splitlines()) == 2
    capsys.readouterr()
    err = cli_error(capsys, ["evaluate", "phantom:100000000", "--methods", "adjoint", "--device", "cpu", "--quiet",
                             "--out", str(tmp_path / "all.csv")])
    assert "more than the limit of 4 GiB" in err and made == [0]


def test_evaluate_reads_only_the_selected_images_of_a_slice_set(capsys, tmp_path):
    images = np.full((3, 128, 128), 0.5, np.float32)
    images[1] = np.nan  # never read: --images 2 selects the first and the last
    path = slice_set(tmp_path / "set.h5", images=images, volume=np.array(["a.h5"] * 3, dtype=object),
                     slice=np.arange(3, dtype=np.int32))
    out = tmp_path / "r.csv"
    assert main(["evaluate", str(path), "--images", "2", "--methods", "adjoint", "--reference", "adjoint",
                 "--device", "cpu", "--quiet", "--out", str(out)]) == 0
    from genreg_viewer.evaluation.evaluate import read_rows

    assert sorted(int(r["image"]) for r in read_rows(out)) == [0, 2]
    capsys.readouterr()
    err = cli_error(capsys, ["evaluate", str(path), "--methods", "adjoint", "--device", "cpu", "--quiet",
                             "--out", str(tmp_path / "all.csv")])
    assert "contains NaN or infinite values" in err


# ------------------------------------------------------------------------------------------------ CLI numbers
@pytest.mark.parametrize("command", ["recon", "evaluate", "calibrate", "train"])
def test_a_huge_thread_count_is_refused_in_one_line(capsys, tmp_path, command):
    args = {
        "recon": ["recon", SAMPLE, "--method", "adjoint"],
        "evaluate": ["evaluate", "phantom:1", "--methods", "adjoint", "--out", str(tmp_path / "r.csv")],
        "calibrate": ["calibrate", "phantom:1"],
        "train": ["train", "vae", "phantom:2", "--out", str(tmp_path / "run"), "--epochs", "1"],
    }[command]
    err = cli_error(capsys, [*args, "--device", "cpu", "--threads", "100000"])
    assert "--threads must be an integer from 1 to 256, got 100000" in err
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------------------------------------ checkpoints
CHECKPOINT_EDITS = {
    "negative step": (lambda p: p.update(step=-5), "'step' must be an integer from 0 to 2"),
    "huge step": (lambda p: p.update(step=10**9), "'step' must be an integer from 0 to 2"),
    "text step": (lambda p: p.update(step="1"), "'step' must be an integer"),
    "no trainable": (lambda p: p.pop("trainable"), "'trainable' must be the network's tensors"),
    "other network": (lambda p: p["trainable"].pop(next(iter(p["trainable"]))), "holds another network: missing"),
    "no optimizer": (lambda p: p.pop("optimizer"), "'optimizer' must be an optimiser state"),
    "seconds": (lambda p: p.update(seconds=float("nan")), "'seconds' must be a finite number"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CHECKPOINT_EDITS))
def test_damaged_checkpoints_are_not_resumed(capsys, tmp_path, case):
    import torch

    common = ["train", "edip", "--images", "2", "--batch", "1", "--steps", "2", "--threads", "1",
              "--out", str(tmp_path / "e")]
    assert main([*common, "--keep-checkpoint"]) == 0
    checkpoint = tmp_path / "e.checkpoint.pt"
    payload = torch.load(checkpoint, weights_only=True)
    edit, message = CHECKPOINT_EDITS[case]
    edit(payload)
    torch.save(payload, checkpoint)
    (tmp_path / "e.safetensors").unlink()
    capsys.readouterr()
    assert main([*common, "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert re.search(message, err) and "e.checkpoint.pt" in err and "Traceback" not in err
    assert not (tmp_path / "e.safetensors").exists()


def test_a_multi_coil_kspace_slice_too_large_to_transform_is_refused_from_its_header(tmp_path):
    import h5py

    from genreg_viewer.data.loading import load_image
    from genreg_viewer.data.errors import DataError

    path = tmp_path / "kspace.h5"
    with h5py.File(path, "w") as f:  # nothing stored: 15 coils of 2048 x 2048 declared (1 GiB of complex128 each)
        f.create_dataset("kspace", shape=(2, 15, 2048, 2048), dtype="c8", chunks=(1, 1, 2048, 2048),
                         compression="gzip")
    with pytest.raises(DataError, match="transforming a slice of 15 x 2048 x 2048 would take about 3.75 GiB"):
        load_image(path)
    with h5py.File(path, "w") as f:  # fastMRI's multi-coil knee size still loads
        f.create_dataset("kspace", data=np.ones((1, 15, 64, 64), np.complex64))
    assert load_image(path, size=None).image.shape == (64, 64)


def test_measured_kspace_too_large_to_reconstruct_is_refused_from_its_header(capsys, tmp_path):
    header = "{'descr': '<c8', 'fortran_order': False, 'shape': (8192, 8192), }"
    header += " " * (118 - len(header)) + "\n"
    path = tmp_path / "kspace.npy"
    path.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode())
    err = cli_error(capsys, ["recon", "--kspace", str(path), "--method", "adjoint", "--device", "cpu"])
    assert "reconstructing a slice of 8192 x 8192 would take about 16 GiB, more than the limit of 2 GiB" in err


def test_hdf5_data_in_tiny_chunks_is_refused_before_reading(tmp_path):
    import time

    import h5py

    from genreg_viewer.data.loading import load_image
    from genreg_viewer.data.errors import DataError

    path = tmp_path / "chunks.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("reconstruction_esc", shape=(1, 8192, 8192), dtype="f4", chunks=(1, 1, 1))
    start = time.perf_counter()
    with pytest.raises(DataError, match="one read would touch 67108864 chunks"):
        load_image(path)
    assert time.perf_counter() - start < 5


def test_an_h5_bundle_declaring_gigabytes_is_refused_before_reading(tmp_path):
    import json

    import h5py

    from genreg_viewer.application import bundles
    from genreg_viewer.application.bundles import SessionError, read_bundle

    path = tmp_path / "session.h5"
    with h5py.File(path, "w") as f:  # a few hundred bytes on disk
        f.create_dataset("ground_truth", shape=(15000, 256, 256), dtype="f4", chunks=(1, 256, 256),
                         compression="gzip")
        f.create_dataset("mask", data=np.ones((128, 128), bool))
        f.attrs[bundles.H5_META_ATTR] = json.dumps({"format": bundles.FORMAT_NAME, "version": 1,
                                                   "arrays": ["ground_truth", "mask"]})
    with pytest.raises(SessionError, match="more than 1 GiB"):
        read_bundle(path)


@pytest.mark.slow
def test_a_many_frame_gif_named_png_is_refused_at_once(tmp_path):
    import time

    from PIL import Image

    from genreg_viewer.data.loading import load_image
    from genreg_viewer.data.errors import DataError

    frames = [Image.new("L", (2000, 2000), value) for value in range(0, 200, 20)]
    path = tmp_path / "scan.png"
    frames[0].save(path, format="GIF", save_all=True, append_images=frames[1:])  # small on disk, slow to decode
    start = time.perf_counter()
    with pytest.raises(DataError, match="holds GIF, not PNG as its name says"):
        load_image(path)
    assert time.perf_counter() - start < 2
    tiff = tmp_path / "stack.tif"
    ramps = [Image.fromarray((np.arange(64 * 64).reshape(64, 64) % (50 + k)).astype(np.uint8)) for k in range(3)]
    ramps[0].save(tiff, save_all=True, append_images=ramps[1:])  # a TIFF stack is still a volume
    loaded = load_image(tiff, size=None)
    assert loaded.num_slices == 3 and loaded.image.shape == (64, 64)


# ------------------------------------------------------------------------------------------------ HDF5 odds
@pytest.mark.parametrize("case", ["null image", "null kspace", "empty attributes", "null header"])
def test_hdf5_null_dataspaces_and_empty_attributes_are_one_line_or_read(capsys, tmp_path, case):
    import h5py

    path = tmp_path / "odd.h5"
    with h5py.File(path, "w") as f:
        if case == "null image":
            f.create_dataset("reconstruction_esc", data=h5py.Empty("f4"))
        elif case == "null kspace":
            f.create_dataset("kspace", data=h5py.Empty("c8"))
        else:
            yy, xx = np.mgrid[:32, :32]
            f.create_dataset("reconstruction_esc", data=np.stack([np.sin(xx / 3.0) + yy / 32.0] * 2).astype("f4"))
            f.attrs["acquisition"] = h5py.Empty("S10")
            f.attrs["max"] = h5py.Empty("f8")
            if case == "null header":
                f.create_dataset("ismrmrd_header", data=h5py.Empty("S10"))
    assert main(["info", str(path)]) == 0  # described, the empty parts shown as such
    out = capsys.readouterr().out
    assert "Traceback" not in out and ("(empty)" in out or "acquisition = null" in out)
    if case.startswith("null") and case != "null header":
        err = cli_error(capsys, ["recon", str(path), "--method", "adjoint", "--device", "cpu", "--json"])
        assert "holds no data (an empty HDF5 dataspace)" in err
    else:
        assert main(["recon", str(path), "--method", "adjoint", "--device", "cpu", "--json"]) == 0


# ------------------------------------------------------------------------------------------------ MRNet exams
def test_a_truncated_mrnet_exam_is_skipped_by_name_and_the_build_goes_on(capsys, tmp_path):
    from genreg_viewer.data.mrnet import build_mrnet_slice_set, load_mrnet_stack
    from genreg_viewer.data.phantom import phantom_batch
    from genreg_viewer.data.errors import DataError

    folder = tmp_path / "MRNet" / "train" / "coronal"
    folder.mkdir(parents=True)
    for exam in (0, 1):
        np.save(folder / f"{exam:04d}.npy", (phantom_batch(4, exam, size=64) * 255).astype(np.uint8))
    broken = folder / "0001.npy"
    broken.write_bytes(broken.read_bytes()[:-5000])  # cut off: shorter than its header says
    with pytest.raises(DataError, match="0001.npy is truncated"):
        load_mrnet_stack(broken)
    summary = build_mrnet_slice_set(tmp_path / "MRNet", tmp_path / "set.h5", size=32, progress=False)
    assert summary.num_volumes == 1 and len(summary.skipped) == 1 and "0001.npy" in summary.skipped[0][0]
    np.save(folder / "0002.npy", np.zeros((4, 64, 64), np.complex64))
    with pytest.raises(DataError, match="expected real numeric pixel data, got dtype complex64"):
        load_mrnet_stack(folder / "0002.npy")


# ------------------------------------------------------------------------------------------------ temporaries
def test_temporaries_of_killed_processes_are_removed_by_the_next_write(tmp_path):
    import subprocess
    import sys

    from genreg_viewer import fileio

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    stale = tmp_path / f".set.h5.genreg-{fileio._HOST}-{dead_pid}-x1y2z3.h5"  # what kill -9 left behind
    stale.write_bytes(b"x" * 1000)
    running = tmp_path / f".set.h5.genreg-{fileio._HOST}-{os.getppid()}-a1b2c3.h5"  # a process still writing
    running.write_bytes(b"y")
    other_host = tmp_path / f".set.h5.genreg-zzzzzz-{dead_pid}-d4e5f6.h5"
    other_host.write_bytes(b"z")
    mine = tmp_path / ".hidden"
    mine.write_text("not ours")
    fileio.atomic_write_text(tmp_path / "notes.txt", "new")
    assert not stale.exists() and running.exists() and other_host.exists() and mine.exists()
    assert (tmp_path / "notes.txt").read_text() == "new"


@pytest.mark.slow
def test_sigterm_while_writing_leaves_no_temporary(tmp_path):
    import signal
    import subprocess
    import sys

    out = tmp_path / "mask.npy"
    code = (
        "import sys, time\n"
        "import numpy as np\n"
        "from genreg_viewer.cli.main import main\n"
        "def slow(*args, **kwargs):\n"
        "    print('writing', flush=True)\n"
        "    time.sleep(60)\n"
        "np.save = slow\n"
        f"sys.exit(main(['mask', 'radial:25', '--out', {str(out)!r}]))\n"
    )
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        assert process.stdout.readline().strip() == "writing"
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".mask.npy.genreg-")]  # the temporary
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 130
    finally:
        process.kill()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_a_compressed_npz_volume_is_read_one_slice_at_a_time(tmp_path):
    import tracemalloc
    import zipfile

    from genreg_viewer.data.loading import load_image

    shape = (512, 1024, 1024)  # 512 MiB of uint8 zeros, about half a MiB on disk
    header = f"{{'descr': '|u1', 'fortran_order': False, 'shape': {shape!r}, }}"
    header += " " * (118 - len(header)) + "\n"
    path = tmp_path / "volume.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        with archive.open("images.npy", "w", force_zip64=True) as member:
            member.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode())
            block = bytes(2**24)
            for _ in range(32):
                member.write(block)
    assert path.stat().st_size < 4 * 2**20
    tracemalloc.start()
    try:
        with pytest.raises(Exception, match="constant"):  # all zeros: refused as constant, after reading a slice
            load_image(path, size=None)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20, f"{peak / 2**20:.0f} MiB held to read one 1 MiB slice"


@pytest.mark.parametrize("name", ["run1__image", "run1__std_map"])
def test_a_session_run_holding_nan_is_refused(session_folder, name):
    from genreg_viewer.application import ExperimentState
    from genreg_viewer.application.bundles import SessionError
    from genreg_viewer.application.sessions import load_session

    _, folder = session_folder
    if name == "run1__std_map":  # give the run a std map first
        edit_session(folder, lambda m: (m["runs"][0].update(extras=["std_map"]), m["arrays"].append(name)))
    values = np.full((32, 32), 0.5, np.float32)
    values[3, 4] = np.nan
    np.save(folder / f"{name}.npy", values)
    fresh = ExperimentState(shape=(32, 32))
    with pytest.raises(SessionError, match="contains NaN or infinite values"):
        load_session(folder, fresh)
    assert fresh.results == []


def test_evaluate_bounds_a_huge_selection_before_listing_it(capsys, tmp_path):
    import time

    start = time.perf_counter()
    err = cli_error(capsys, ["evaluate", f"phantom:{2**31}", "--images", str(2**31 - 1), "--methods", "adjoint",
                             "--device", "cpu", "--quiet", "--out", str(tmp_path / "r.csv")])
    assert "more than the limit of 4 GiB" in err and time.perf_counter() - start < 10
