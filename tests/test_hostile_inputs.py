"""Hostile and broken inputs (issue 13): crafted session bundles, oversized or redirected data files, seeds and
parameters out of range. Every case must end in one clear line (an exception or CLI exit status 2), change no state
and touch no file outside the bundle's folder. The files are generated here and are tiny; nothing large is
allocated, so the module runs in seconds."""

from __future__ import annotations

import json
import os
import struct
import time
import zipfile
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from genreg_viewer.application import ExperimentState, ImageInfo, RunRecord
from genreg_viewer.application import bundles, sessions
from genreg_viewer.application.bundles import SessionError
from genreg_viewer.cli.main import main
from genreg_viewer.data import limits
from genreg_viewer.data.loading import describe_file, load_image
from genreg_viewer.data.errors import DataError
from genreg_viewer.physics import radial_mask
from genreg_viewer.recon import Parameter, ParameterError

pytest_plugins = ["gui_helpers"]  # the errors and window fixtures

SIDE = 32


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert text and "\n" not in text and "Traceback" not in text, text
    return text


# ------------------------------------------------------------------------------------------------ files
def npy_header_only(path: Path, shape: tuple, descr: str = "<f4") -> Path:
    """A ``.npy`` file whose header declares ``shape`` but that holds no data (a few hundred bytes)."""
    header = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape!r}, }}"
    header += " " * (118 - len(header)) + "\n"
    path.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode())
    return path


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header declares ``width`` x ``height`` grayscale pixels, with no image data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b""))
                     + chunk(b"IEND", b""))
    return path


# ------------------------------------------------------------------------------------------------ sessions
def make_state(qapp) -> ExperimentState:
    state = ExperimentState(shape=(SIDE, SIDE))
    yy, xx = np.mgrid[:SIDE, :SIDE]
    image = (0.5 + 0.4 * np.sin(xx / 5.0) * np.cos(yy / 7.0)).astype(np.float32)
    state.set_image(image, ImageInfo(source="test image"))
    state.set_mask(radial_mask(8, (SIDE, SIDE)), "radial:8")
    state.set_noise(0.02, 3)
    record = RunRecord(run_id=1, method="adjoint", title="Adjoint", image=image * 0.9, params={}, iterations=1,
                       seconds=0.1, device="cpu", psnr=20.0, ssim=0.5, setting=state.setting(),
                       arrays={"std_map": np.full((SIDE, SIDE), 0.1, np.float32)})
    state.add_result(record)
    return state


def snapshot(state: ExperimentState) -> dict:
    return {
        "image": state.image.copy(), "mask": state.mask.copy(), "spec": state.mask_spec, "sigma": state.sigma,
        "seed": state.seed, "version": state.image_version, "runs": [r.run_id for r in state.results],
        "info": state.image_info,
    }


def assert_unchanged(state: ExperimentState, before: dict) -> None:
    after = snapshot(state)
    np.testing.assert_array_equal(after.pop("image"), before.pop("image"))
    np.testing.assert_array_equal(after.pop("mask"), before.pop("mask"))
    assert after == before


@pytest.fixture
def saved(qapp, tmp_path):
    """``(state, folder)``: a session with one run saved as a folder bundle, next to a victim file."""
    state = make_state(qapp)
    folder = tmp_path / "bundles" / "session"
    sessions.save_session(folder, state, {"method": {"method": "adjoint", "iterations": 5},
                                          "comparison": {"region": [2, 2, 8, 8], "window": [0.0, 1.0]}, "tab": 0})
    return state, folder


@pytest.fixture
def victims(tmp_path):
    """Files outside the bundle folder that no session operation may touch."""
    folder = tmp_path / "victim"
    folder.mkdir()
    precious = folder / "precious.npy"
    np.save(precious, np.arange(4.0))
    absolute = tmp_path / "absolute.npy"
    np.save(absolute, np.ones(3))
    return [precious, absolute]


def assert_intact(victims) -> None:
    for path in victims:
        assert path.exists(), f"{path} was deleted"
        np.load(path)


def edit_meta(folder: Path, change) -> None:
    meta_file = folder / bundles.FOLDER_META
    meta = json.loads(meta_file.read_text())
    change(meta)
    meta_file.write_text(json.dumps(meta))


def test_a_valid_session_round_trips(saved, qapp):
    state, folder = saved
    other = ExperimentState(shape=(SIDE, SIDE))
    gui = sessions.load_session(folder, other)
    np.testing.assert_array_equal(other.image, state.image)
    np.testing.assert_array_equal(other.mask, state.mask)
    assert (other.sigma, other.seed, other.mask_spec) == (0.02, 3, "radial:8")
    assert [r.run_id for r in other.results] == [1] and "std_map" in other.results[0].arrays
    assert gui["comparison"]["region"] == [2, 2, 8, 8] and gui["method"]["iterations"] == 5


def test_array_names_outside_the_folder_are_refused_before_reading(saved, victims, qapp):
    state, folder = saved
    for name in ["../../victim/precious", str(victims[1].with_suffix("")), "..", "a/b", "x.y", "", 5]:
        edit_meta(folder, lambda meta, name=name: meta["arrays"].append(name))
        before = snapshot(state)
        with pytest.raises(SessionError, match="invalid array name") as info:
            sessions.load_session(folder, state)
        one_line(info.value)
        assert_unchanged(state, before)
        edit_meta(folder, lambda meta, name=name: meta["arrays"].remove(name))
    assert_intact(victims)


def test_a_link_out_of_the_folder_is_refused(saved, victims, qapp):
    state, folder = saved
    target = folder / "run1__std_map.npy"
    target.unlink()
    target.symlink_to(victims[0])
    with pytest.raises(SessionError, match="outside the session folder") as info:
        bundles.read_bundle(folder)
    one_line(info.value)
    assert_intact(victims)


def test_saving_into_a_crafted_folder_deletes_nothing_outside(saved, victims, tmp_path, qapp):
    state, folder = saved
    # the previous session.json lists escaping names: nothing of it is trusted
    edit_meta(folder, lambda meta: meta["arrays"].extend(["../../victim/precious", str(victims[1].with_suffix(""))]))
    sessions.save_session(folder, state)
    assert_intact(victims)
    # valid names: a link pointing outside is removed itself, never its target; a non-.npy file is kept
    (folder / "stale_link.npy").symlink_to(victims[0])
    (folder / "notes.npy").write_text("not an array")
    np.save(folder / "old_run.npy", np.zeros(2))
    edit_meta(folder, lambda meta: meta["arrays"].extend(["stale_link", "notes", "old_run"]))
    sessions.save_session(folder, state)
    assert_intact(victims)
    assert not (folder / "stale_link.npy").is_symlink() and not (folder / "old_run.npy").exists()
    assert (folder / "notes.npy").exists()
    sessions.load_session(folder, ExperimentState(shape=(SIDE, SIDE)))  # still a valid session


def test_saving_refuses_invalid_array_names(tmp_path, qapp):
    bundle = bundles.Bundle({"format": bundles.FORMAT_NAME}, {"../evil": np.zeros(2)})
    with pytest.raises(SessionError, match="invalid array name"):
        bundles.write_bundle(tmp_path / "out", bundle)
    assert not (tmp_path / "evil.npy").exists()


def _set_run(key, value):
    return lambda meta: meta["runs"][0].__setitem__(key, value)


MALFORMED = {
    "runs: 5": (lambda meta: meta.__setitem__("runs", 5), "runs must be a list"),
    "iterations: null": (_set_run("iterations", None), "iterations must be an integer"),
    "gui: 5": (lambda meta: meta.__setitem__("gui", 5), "gui must be an object"),
    "region: [1]": (lambda meta: meta["gui"]["comparison"].__setitem__("region", [1]), "region must be a list"),
    "psnr: high": (_set_run("psnr", "high"), "psnr must be a number"),
    "seed 2**64": (lambda meta: meta.__setitem__("seed", 2**64), "seed must be between 0 and 2\\*\\*63"),
    "seed -1": (lambda meta: meta.__setitem__("seed", -1), "seed must be between"),
    "seed 1.5": (lambda meta: meta.__setitem__("seed", 1.5), "seed must be an integer"),
    "sigma text": (lambda meta: meta.__setitem__("sigma", "x"), "sigma must be a number"),
    "sigma negative": (lambda meta: meta.__setitem__("sigma", -1), "sigma must be between 0 and 10"),
    "sigma 1e6": (lambda meta: meta.__setitem__("sigma", 1e6), "sigma must be between 0 and 10"),
    "tab huge": (lambda meta: meta["gui"].__setitem__("tab", 10**30), "gui.tab must be between"),
    "title 5": (_set_run("title", 5), "title must be a string"),
    "run_id huge": (_set_run("run_id", 2**40), "run_id must be between"),
    "run_id text": (_set_run("run_id", "1"), "run_id must be an integer"),
    "extras escape": (_set_run("extras", ["../../victim/precious"]), "invalid array name"),
    "extras missing": (_set_run("extras", ["latent"]), "lacks the array 'latent'"),
    "params list": (_set_run("params", [1, 2]), "params must be an object"),
    "history 5": (_set_run("history", 5), "history must be a list"),
    "setting fraction": (_set_run("setting", {"fraction": "most"}), "fraction must be a number"),
    "image_info 5": (lambda meta: meta.__setitem__("image_info", 5), "image_info must be an object"),
    "slice_index text": (lambda meta: meta["image_info"].__setitem__("slice_index", "2"), "slice_index"),
    "version 99": (lambda meta: meta.__setitem__("version", 99), "version 99 is not supported"),
    "arrays 5": (lambda meta: meta.__setitem__("arrays", 5), "'arrays' must be a list"),
    "window 3 values": (lambda meta: meta["gui"]["comparison"].__setitem__("window", [0, 1, 2]), "window"),
    "iterations param inf": (lambda meta: meta["gui"].__setitem__("method", {
        "method": "mean+identity", "edited": ["z_steps"], "params": {"z_steps": "inf"}}), "z_steps"),
    "gui iterations text": (lambda meta: meta["gui"]["method"].__setitem__("iterations", "many"), "iterations"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_sessions_fail_in_one_line_and_change_nothing(saved, victims, case, qapp):
    state, folder = saved
    change, message = MALFORMED[case]
    edit_meta(folder, change)
    before = snapshot(state)
    with pytest.raises(SessionError, match=message) as info:
        sessions.load_session(folder, state)
    assert one_line(info.value).startswith("session")
    assert_unchanged(state, before)
    assert_intact(victims)


@pytest.mark.parametrize("shape", [(1, 1), (64, 64), (SIDE, SIDE + 1)])
def test_ground_truth_of_another_shape_than_the_runs(saved, shape, qapp):
    state, folder = saved
    np.save(folder / "ground_truth.npy", np.zeros(shape, np.float32))
    np.save(folder / "mask.npy", np.ones(shape, bool))
    before = snapshot(state)
    with pytest.raises(SessionError, match="shape") as info:
        sessions.load_session(folder, state)
    one_line(info.value)
    assert_unchanged(state, before)


@pytest.mark.parametrize("case", ["huge header", "objects", "truncated", "text", "missing", "mask shape"])
def test_broken_arrays_in_a_session(saved, case, qapp):
    state, folder = saved
    target = folder / "run1__image.npy"
    if case == "huge header":
        npy_header_only(target, (3, 40000, 40000))
    elif case == "objects":
        npy_header_only(target, (SIDE, SIDE), descr="|O")
    elif case == "truncated":
        target.write_bytes(target.read_bytes()[:200])
    elif case == "text":
        target.write_text("hello")
    elif case == "missing":
        target.unlink()
    else:
        np.save(folder / "mask.npy", np.ones((SIDE, 2), bool))
    before = snapshot(state)
    start = time.perf_counter()
    with pytest.raises(SessionError) as info:
        sessions.load_session(folder, state)
    assert time.perf_counter() - start < 2
    one_line(info.value)
    assert_unchanged(state, before)


def test_deeply_nested_or_invalid_json(saved, qapp):
    state, folder = saved
    meta_file = folder / bundles.FOLDER_META
    for text in ['{"format": "genreg-viewer", "x": ' + "[" * 100_000 + "]" * 100_000 + "}", "{not json", "[]"]:
        meta_file.write_text(text)
        with pytest.raises(SessionError) as info:
            sessions.load_session(folder, state)
        one_line(info.value)


@pytest.mark.parametrize("suffix", [".npz", ".h5"])
def test_file_bundles_are_checked_too(qapp, tmp_path, suffix):
    state = make_state(qapp)
    path = tmp_path / f"session{suffix}"
    bundle = sessions.make_bundle(state, "session", {})
    bundle.meta["runs"][0]["psnr"] = "high"
    bundles.write_bundle(path, bundle)
    before = snapshot(state)
    with pytest.raises(SessionError, match="psnr must be a number"):
        sessions.load_session(path, state)
    assert_unchanged(state, before)


def test_an_h5_bundle_with_external_storage_is_refused(qapp, tmp_path):
    state = make_state(qapp)
    path = tmp_path / "session.h5"
    bundles.write_bundle(path, sessions.make_bundle(state, "session", {}))
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"\0" * (SIDE * SIDE * 4))
    with h5py.File(path, "a") as f:
        del f["ground_truth"]
        f.create_dataset("ground_truth", shape=(SIDE, SIDE), dtype="f4", external=[(str(outside), 0, SIDE * SIDE * 4)])
    with pytest.raises(SessionError, match="outside the file"):
        bundles.read_bundle(path)


def test_an_h5_bundle_with_a_link_to_another_file_is_refused(qapp, tmp_path):
    state = make_state(qapp)
    path = tmp_path / "session.h5"
    bundles.write_bundle(path, sessions.make_bundle(state, "session", {}))
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.create_dataset("data", data=np.zeros((SIDE, SIDE), np.float32))
    with h5py.File(path, "a") as f:
        del f["ground_truth"]
        f["ground_truth"] = h5py.ExternalLink(str(other), "data")
    with pytest.raises(SessionError, match="or a link"):
        bundles.read_bundle(path)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["gui: 5", "region: [1]", "psnr: high", "seed 2**64"])
def test_the_app_shows_one_dialog_and_keeps_its_state(window, errors, saved, case):
    _, folder = saved
    change, _ = MALFORMED[case]
    edit_meta(folder, change)
    before = snapshot(window.state)
    assert not window.open_path(folder)
    assert len(errors) == 1 and errors[0][0] == "Cannot open session"
    one_line(errors[0][1])
    assert_unchanged(window.state, before)


@pytest.mark.slow
def test_the_app_opens_a_valid_session(window, errors, saved):
    _, folder = saved
    assert window.open_path(folder) and errors == []
    assert window.state.shape == (SIDE, SIDE) and len(window.state.results) == 1
    assert window.comparison.region == (2, 2, 8, 8)


# ------------------------------------------------------------------------------------------------ data files
def test_an_hdf5_file_declaring_a_huge_volume_is_refused_quickly(tmp_path):
    path = tmp_path / "huge.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("reconstruction_esc", shape=(2, 40000, 40000), dtype="f4", chunks=(1, 1000, 1000),
                         compression="gzip")
    assert path.stat().st_size < 10_000
    start = time.perf_counter()
    with pytest.raises(DataError, match=f"limit of {limits.MAX_SLICE_PIXELS} pixels") as info:
        load_image(path)
    assert time.perf_counter() - start < 2
    one_line(info.value)
    assert "exceeds the limit" in describe_file(path)["problem"]


def test_huge_kspace_and_chunks_are_refused(tmp_path):
    path = tmp_path / "kspace.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("kspace", shape=(2, 64, 9000, 9000), dtype="c8", chunks=(1, 1, 100, 100))
    with pytest.raises(DataError, match="exceeds the limit|more than the limit"):  # slice size or chunk count
        load_image(path)
    path = tmp_path / "chunks.h5"
    with h5py.File(path, "w") as f:  # small slices, one giant compressed chunk
        f.create_dataset("images", shape=(400, 1024, 1024), dtype="f8", chunks=(400, 1024, 1024), compression="gzip")
    with pytest.raises(DataError, match="chunks of"):
        load_image(path)


def test_external_and_virtual_hdf5_datasets_are_refused(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"root:x:0:0:root:/root:/bin/bash\n" * 400)
    external = tmp_path / "external.h5"
    with h5py.File(external, "w") as f:
        f.create_dataset("reconstruction_esc", shape=(100, 100), dtype="u1", external=[(str(secret), 0, 10_000)])
    with pytest.raises(DataError, match="external files") as info:
        load_image(external)
    one_line(info.value)

    source = tmp_path / "source.h5"
    with h5py.File(source, "w") as f:
        f.create_dataset("data", data=np.random.default_rng(0).random((64, 64)))
    layout = h5py.VirtualLayout(shape=(64, 64), dtype="f8")
    layout[:] = h5py.VirtualSource(str(source), "data", shape=(64, 64))
    virtual = tmp_path / "virtual.h5"
    with h5py.File(virtual, "w") as f:
        f.create_virtual_dataset("reconstruction_esc", layout)
    with pytest.raises(DataError, match="virtual dataset"):
        load_image(virtual)

    header = tmp_path / "header.h5"  # a fastMRI k-space file whose XML header is read from elsewhere
    with h5py.File(header, "w") as f:
        f.create_dataset("kspace", data=np.ones((2, 16, 16), np.complex64))
        f.create_dataset("ismrmrd_header", shape=(100,), dtype="u1", external=[(str(secret), 0, 100)])
    with pytest.raises(DataError, match="ismrmrd_header"):
        load_image(header)


@pytest.mark.parametrize("width, height", [(100_000, 100_000), (9000, 9000)])
def test_images_whose_header_declares_too_many_pixels(tmp_path, width, height):
    path = png_header_only(tmp_path / "big.png", width, height)
    start = time.perf_counter()
    with pytest.raises(DataError, match="8192 x 8192") as info:
        load_image(path)
    assert time.perf_counter() - start < 2
    one_line(info.value)


def test_npy_and_npz_headers_are_checked_before_loading(tmp_path):
    with pytest.raises(DataError, match="exceeds the limit"):
        load_image(npy_header_only(tmp_path / "big.npy", (3, 40000, 40000)))
    with pytest.raises(DataError, match="Python objects"):
        load_image(npy_header_only(tmp_path / "objects.npy", (8, 8), descr="|O"))
    header = npy_header_only(tmp_path / "member.npy", (30000, 30000)).read_bytes()
    archive = tmp_path / "big.npz"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("small.npy", header)
    with pytest.raises(DataError, match="exceeds the limit") as info:
        load_image(archive)
    one_line(info.value)


@pytest.mark.slow
def test_real_sized_data_still_loads(tmp_path):
    """The limits leave room for real MRI: a 640 x 368 x 15-coil k-space slice and a 320 x 320 volume."""
    path = tmp_path / "fastmri.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("kspace", shape=(3, 15, 640, 368), dtype="c8", chunks=(1, 15, 640, 368))
        f["kspace"][1] = np.ones((15, 640, 368), np.complex64)
    assert load_image(path).image.shape == (128, 128)


# ------------------------------------------------------------------------------------------------ seeds, parameters
def test_seeds_are_range_checked():
    assert limits.check_seed(2**63 - 1) == 2**63 - 1
    for bad in (2**63, -1, 1.0, True, "3", None):
        with pytest.raises(ValueError, match="seed"):
            limits.check_seed(bad)


def test_parameters_refuse_non_finite_and_overflowing_values():
    integer = Parameter("z_steps", int, 1, minimum=1, maximum=100)
    unbounded = Parameter("count", int, 1)
    real = Parameter("alpha", float, 1.0)
    for value in ("inf", "-inf", "nan", "1e400", float("inf"), float("nan"), "2.5", True, None, "ten"):
        with pytest.raises(ParameterError, match="z_steps") as info:
            integer.parse(value)
        one_line(info.value)
    for value in ("99999999999999999999999", 2**63, 10**400):
        with pytest.raises(ParameterError, match="2\\*\\*63"):
            unbounded.parse(value)
    for value in ("inf", "1e400", 10**400, "nan"):
        with pytest.raises(ParameterError, match="finite"):
            real.parse(value)
    assert integer.parse("1e1") == 10 and integer.parse(" 7 ") == 7 and real.parse("1e30") == 1e30


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


@pytest.mark.parametrize("seed", ["99999999999999999999", "-1", str(2**63)])
def test_cli_seed_out_of_range(capsys, image_file, seed):
    err = cli_error(capsys, ["recon", str(image_file), "--method", "adjoint", "--device", "cpu", "--seed", seed])
    assert "--seed must be between 0 and 2**63 - 1" in err and "Overflow" not in err


@pytest.mark.parametrize("param", ["z_steps=inf", "cg_iterations=1e400", "z_steps=nan", "z_steps=1e30"])
def test_cli_parameters_that_overflow(capsys, image_file, param):
    err = cli_error(capsys, ["recon", str(image_file), "--method", "mean+identity", "--device", "cpu",
                             "--param", param])
    assert "OverflowError" not in err and param.split("=")[0] in err


def test_cli_refuses_a_huge_hdf5_volume(capsys, tmp_path):
    path = tmp_path / "huge.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("reconstruction_esc", shape=(2, 40000, 40000), dtype="f4", chunks=(1, 1000, 1000),
                         compression="gzip")
    err = cli_error(capsys, ["recon", str(path), "--method", "adjoint", "--device", "cpu"])
    assert "exceeds the limit" in err


# ------------------------------------------------------------------------------------------------ sizes asked for
def test_cli_refuses_a_huge_slice_set_size_before_writing(capsys, tmp_path):
    out = tmp_path / "out" / "set.h5"
    for fmt in (["--slices-near-centre", "8"], ["--format", "mrnet"]):
        err = cli_error(capsys, ["dataset", "build", str(tmp_path), str(out), "--size", "100000", *fmt])
        assert "--size 100000 exceeds the limit of 8192 pixels a side" in err
    assert not (tmp_path / "out").exists() and list(tmp_path.iterdir()) == []  # no temp file left


@pytest.mark.parametrize("args", [
    ["phantom:4", "--held-out", "phantom:999999999999"],
    ["phantom:999999"],
    ["phantom:4", "--held-out", "phantom:" + "9" * 40],
])
def test_cli_refuses_huge_phantom_sets_up_front(capsys, tmp_path, args):
    start = time.perf_counter()
    err = cli_error(capsys, ["train", "vae", *args, "--out", str(tmp_path / "run"), "--epochs", "1",
                             "--device", "cpu"])
    assert "more than the limit of 4 GiB" in err and "phantom:" in err
    assert time.perf_counter() - start < 5 and not (tmp_path / "run").exists()


def test_phantom_stacks_and_slice_sets_are_bounded(tmp_path):
    from genreg_viewer.data.dataset import load_slice_set
    from genreg_viewer.data.phantom import phantom_batch

    with pytest.raises(DataError, match="limit of 4 GiB"):
        phantom_batch(10**12, 0)
    path = tmp_path / "set.h5"
    with h5py.File(path, "w") as f:  # a tiny file declaring 10**6 compressed 128x128 images
        f.create_dataset("images", shape=(10**6, 128, 128), dtype="f4", chunks=(1, 128, 128), compression="gzip")
    with pytest.raises(DataError, match="limit of 4 GiB") as info:
        load_slice_set(path)
    one_line(info.value)
    with pytest.raises(DataError, match="8192 pixels a side"):
        limits.check_side(8193)
    assert limits.check_side(8192) == 8192


def test_kspace_and_mask_headers_are_checked_before_loading(tmp_path):
    from genreg_viewer.data.kspace import load_kspace
    from genreg_viewer.physics import MaskError, load_mask

    with pytest.raises(DataError, match="exceeds the limit") as info:
        load_kspace(npy_header_only(tmp_path / "k.npy", (3, 100000, 100000), descr="<c8"))
    one_line(info.value)
    with pytest.raises(DataError, match="complex"):
        load_kspace(npy_header_only(tmp_path / "real.npy", (64, 64)))
    with pytest.raises(DataError, match="cannot read k-space"):  # the header promises data that is not there
        load_kspace(npy_header_only(tmp_path / "short.npy", (64, 64), descr="<c8"))
    archive = tmp_path / "k.npz"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("kspace.npy", npy_header_only(tmp_path / "m.npy", (50000, 50000), descr="<c8").read_bytes())
    with pytest.raises(DataError, match="exceeds the limit"):
        load_kspace(archive)
    good = tmp_path / "good.npz"
    np.savez(good, other=np.zeros(3), kspace=np.ones((2, 8, 8), np.complex128))
    assert load_kspace(good).shape == (8, 8) and load_kspace(good).dtype == np.complex64
    for path, match in ((npy_header_only(tmp_path / "mask.npy", (100000, 100000), descr="|b1"), "4096"),
                        (npy_header_only(tmp_path / "mask3.npy", (2, 64, 64), descr="|b1"), "2-D"),
                        (png_header_only(tmp_path / "mask.png", 5000, 5000), "4096")):
        with pytest.raises(MaskError, match=match) as info:
            load_mask(path)
        assert str(path) in one_line(info.value)


# ------------------------------------------------------------------------------------------------ diverging training
@pytest.mark.slow
def test_cli_vae_with_an_absurd_learning_rate_stops_and_writes_nothing(capsys, tmp_path):
    out = tmp_path / "run"
    assert main(["train", "vae", "phantom:4", "--held-out", "phantom:2:1000000", "--lr", "1e30", "--epochs", "1",
                 "--widths", "4,8", "--latent-dim", "4", "--out", str(out), "--device", "cpu"]) == 2
    err = capsys.readouterr().err  # progress lines, then the error as the last line
    assert "Traceback" not in err
    assert "genreg train: error: training diverged at vae epoch 1" in err.splitlines()[-1] and "lower --lr" in err
    assert not out.exists() or not list(out.glob("*.safetensors")) and not list(out.glob("*.checkpoint.pt"))


class _Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(4, 1)
        self.norm = torch.nn.BatchNorm1d(4)

    def forward(self, x):
        return self.linear(self.norm(x))


def _tiny_loss(model):
    x = torch.linspace(-1, 1, 32).view(8, 4)
    return lambda: model(x).square().mean()


@pytest.mark.parametrize("case", ["nan-loss", "nan-parameter", "last-step", "skipped-to-the-end"])
def test_every_step_trainer_stops_on_non_finite_values(case):
    from genreg_viewer.training.common import TrainingDiverged, train_steps

    torch.manual_seed(0)
    model = _Tiny()
    loss, kwargs = _tiny_loss(model), dict(steps=5, minutes=None, learning_rate=1e-3)
    if case == "nan-loss":
        base_loss = loss

        def loss():
            return base_loss() * float("nan")
    elif case == "nan-parameter":  # e.g. a rescaling after the step that divides by zero
        kwargs["after_step"] = lambda: model.linear.weight.data.fill_(float("inf"))
    elif case == "last-step":  # the one step makes the weights huge; only the model's next output shows it
        kwargs.update(steps=1, learning_rate=1e30)
    else:  # a trainer that tolerates a few non-finite losses but ends on them
        calls = iter(range(100))
        loss, kwargs["max_non_finite"] = (lambda base=loss: base() * (1 if next(calls) < 2 else float("nan"))), 5
    where = {"nan-loss": "step 1:", "nan-parameter": "step 1:.*linear.weight", "last-step": "the end of training",
             "skipped-to-the-end": "the end of training"}[case]
    with pytest.raises(TrainingDiverged, match=f"training diverged.*{where}.*lower --lr") as info:
        train_steps(model, loss, **kwargs)
    one_line(info.value)


def test_non_finite_weights_are_never_written(tmp_path):
    from genreg_viewer.models.weights import WeightsError, save_weights

    model = _Tiny()
    model.norm.running_var[0] = float("nan")
    with pytest.raises(WeightsError, match="NaN or infinite.*norm.running_var"):
        save_weights(model, tmp_path / "m", {"kind": "tiny"})
    assert list(tmp_path.iterdir()) == []


def test_varnet_activation_passes_nan_through_instead_of_indexing_out_of_range():
    from genreg_viewer.models.varnet import RBFActivation

    activation = RBFActivation(4)
    z = torch.zeros(1, 4, 2, 2)
    z[0, 1, 0, 0] = float("nan")
    out = activation(z)
    assert torch.isnan(out[0, 1, 0, 0]) and torch.isfinite(out).sum() == 15


# ------------------------------------------------------------------------------------------------ minor CLI cases
@pytest.mark.parametrize("args", [["mask", "", "--out", "m.png"], ["mask", "  ", "--out", "m.png"],
                                  ["recon", "IMAGE", "--mask", "", "--method", "adjoint", "--device", "cpu"]])
def test_an_empty_mask_spec_is_refused(capsys, image_file, tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    err = cli_error(capsys, [str(image_file) if a == "IMAGE" else a for a in args])
    assert "the mask spec is empty" in err and "directory" not in err
    assert not (tmp_path / "m.png").exists()


@pytest.mark.parametrize("noise", ["1e6", "-1", "nan", "inf", "10.5"])
def test_cli_noise_out_of_range_names_the_noise(capsys, image_file, noise):
    err = cli_error(capsys, ["recon", str(image_file), "--method", "tv", "--device", "cpu", "--noise", noise])
    assert "--noise must be a number between 0 and 10" in err and "alpha" not in err


@pytest.mark.parametrize("device", ["meta", "cuda:x", "", "cpu:0", "xla", "mps:0"])
def test_cli_unknown_devices_are_refused(capsys, image_file, device):
    err = cli_error(capsys, ["recon", str(image_file), "--method", "adjoint", "--device", device])
    assert "unknown device" in err and "use cpu, cuda, cuda:N, mps or auto" in err and "tensor" not in err.lower()


def test_known_device_names_resolve():
    from genreg_viewer.device import resolve_device

    assert resolve_device("auto").type in ("cpu", "cuda") and resolve_device(" CPU ") == torch.device("cpu")
    for name in ("cuda", "cuda:0", "mps"):  # known names: only availability can fail, with its own message
        try:
            resolve_device(name)
        except ValueError as exc:
            assert "not available" in str(exc) or "no CUDA device" in str(exc)


def test_atomic_replace_keeps_the_mode_of_the_file_it_replaces(tmp_path):
    from genreg_viewer.fileio import atomic_write_text

    private = tmp_path / "private.txt"
    private.write_text("old")
    private.chmod(0o600)
    atomic_write_text(private, "new")
    assert private.read_text() == "new" and private.stat().st_mode & 0o777 == 0o600
    fresh = atomic_write_text(tmp_path / "fresh.txt", "x")
    umask = os.umask(0)
    os.umask(umask)
    assert fresh.stat().st_mode & 0o777 == 0o666 & ~umask


@pytest.fixture
def no_reconstruction(monkeypatch):
    """Fails the test if a reconstruction starts: output problems must be found before it."""
    from genreg_viewer.cli.commands import recon

    def refuse(*args, **kwargs):
        raise AssertionError("the reconstruction ran before the output was checked")

    monkeypatch.setattr(recon, "run_method", refuse)
    monkeypatch.setattr(recon, "tune_parameter", refuse)


@pytest.mark.parametrize("where", ["file-as-folder", "folder", "empty", "png-file-as-folder"])
def test_unwritable_outputs_are_refused_before_the_reconstruction(capsys, image_file, tmp_path, no_reconstruction,
                                                                   where):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    option, value, message = {
        "file-as-folder": ("--out", blocker / "out.npz", "is not a folder"),
        "folder": ("--out", tmp_path, "is a folder"),
        "empty": ("--out", "", "--out is empty"),
        "png-file-as-folder": ("--png", blocker / "deeper" / "x.png", "is not a folder"),
    }[where]
    err = cli_error(capsys, ["recon", str(image_file), "--method", "tv", "--iters", "100000", "--device", "cpu",
                             option, str(value)])
    assert message in err and option in err


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="permissions do not bind root")
def test_a_read_only_output_folder_or_file_is_refused_up_front(capsys, image_file, tmp_path, no_reconstruction):
    folder = tmp_path / "locked"
    folder.mkdir()
    (folder / "old.npz").write_bytes(b"x")
    (folder / "old.npz").chmod(0o444)
    folder.chmod(0o555)
    try:
        err = cli_error(capsys, ["recon", str(image_file), "--method", "tv", "--device", "cpu",
                                 "--out", str(folder / "new.npz")])
        assert "is not writable" in err
        err = cli_error(capsys, ["recon", str(image_file), "--method", "tv", "--device", "cpu",
                                 "--out", str(folder / "old.npz")])
        assert "read-only" in err
    finally:
        folder.chmod(0o755)


def test_check_writable_probes_the_folder(tmp_path, monkeypatch):
    """A folder where no file can be created (a read-only file system, or permissions for non-root users) is
    found by the probe, even where os.access would say yes."""
    import tempfile

    from genreg_viewer.fileio import check_writable

    def read_only(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    existing = tmp_path / "old.npz"
    existing.write_bytes(b"x")
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != existing)
    with pytest.raises(ValueError, match="--out .*old.npz is read-only"):
        check_writable(existing, "--out")
    assert check_writable(tmp_path / "new" / "out.npz") == tmp_path / "new" / "out.npz"
    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(ValueError, match="not writable \\(Read-only file system\\)"):
        check_writable(tmp_path / "new" / "out.npz", "--out")
    assert not (tmp_path / "new").exists()


# ------------------------------------------------------------------------------------------------ heavy sessions
@pytest.mark.slow
@pytest.mark.parametrize("side", [129, 1024])
def test_a_session_larger_than_the_app_image_size_is_refused_at_once(window, errors, saved, side):
    """Opening runs the SSIM and the comparison maps on the GUI thread; a 4096 x 4096 ground truth froze it for
    minutes, so sessions hold images of at most the application's image size (128)."""
    _, folder = saved
    np.save(folder / "ground_truth.npy", np.full((side, side), 0.5, np.float32))
    np.save(folder / "mask.npy", np.ones((side, side), bool))
    edit_meta(folder, lambda meta: meta.__setitem__("runs", []))
    before = snapshot(window.state)
    start = time.perf_counter()
    assert not window.open_path(folder)
    assert time.perf_counter() - start < 2
    assert len(errors) == 1 and "to 128 (the application's image size)" in one_line(errors[0][1])
    assert_unchanged(window.state, before)


@pytest.mark.slow
def test_opening_a_session_computes_the_adjoint_scores_once(window, errors, saved, monkeypatch):
    from genreg_viewer.application import experiment as state_module

    calls = []
    ssim = state_module.metrics.ssim
    monkeypatch.setattr(state_module.metrics, "ssim", lambda *a, **k: calls.append(1) or ssim(*a, **k))
    _, folder = saved
    assert window.open_path(folder) and errors == []
    assert len(calls) == 1  # the sampling panel and the comparison panel share it
    scores = window.state.adjoint_metrics()
    assert len(calls) == 1 and np.isfinite(scores).all()
    window.state.set_noise(0.03, 1)  # a new measurement: computed again
    assert len(calls) == 2
