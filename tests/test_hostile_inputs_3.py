"""Hostile inputs, round 3 (issue 22): output paths, slice sets, weight folders, tuned and calibration tables,
bundles. Every case ends in one clear line (an exception, or CLI exit status 2) or a correct result; never a NaN
reported with exit 0, a traceback, a hang or a device replaced by a file. Files are generated here and tiny."""

from __future__ import annotations

import os
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
