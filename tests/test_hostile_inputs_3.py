"""Hostile inputs, round 3 (issue 22): output paths, slice sets, weight folders, tuned and calibration tables,
bundles. Every case ends in one clear line (an exception, or CLI exit status 2) or a correct result; never a NaN
reported with exit 0, a traceback, a hang or a device replaced by a file. Files are generated here and tiny."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import numpy as np
import pytest

from genreg_viewer.cli.main import main


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
    from genreg_viewer.data.preprocess import DataError

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
    from genreg_viewer.data.preprocess import DataError

    path = slice_set(tmp_path / "set.h5", volume=volume, slice=slices)
    with pytest.raises(DataError, match=message):
        load_slice_set_sources(path)
    assert load_slice_set_sources(slice_set(tmp_path / "ok.h5")) == [("a.h5", 3), ("b.h5", 4)]
