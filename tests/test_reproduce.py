"""benchmarks/reproduce.py: the figure script writes a PNG, a CSV and a manifest entry per figure, and the CSV's
numbers are those of a direct registry run on the same image built from the public API (not from the script's
helpers)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import figures_common  # noqa: E402
import reproduce  # noqa: E402

from genreg_viewer import metrics  # noqa: E402
from genreg_viewer.data.phantom import knee_phantom  # noqa: E402
from genreg_viewer.physics import radial_mask, simulate_measurement  # noqa: E402
from genreg_viewer.recon import Problem, run_method  # noqa: E402

TEST_PHANTOM_SEED = 1_000_000


def direct_run(method: str, spokes: int, sigma: float) -> tuple[float, float]:
    """PSNR and SSIM of ``method`` on the first test phantom, built without the script's helpers."""
    image = torch.from_numpy(knee_phantom(TEST_PHANTOM_SEED, 128)).float()[None, None]
    measurement = simulate_measurement(image, radial_mask(spokes), sigma, seed=TEST_PHANTOM_SEED)
    result = run_method(method, Problem(measurement, image, seed=0))
    clipped = result.image.clamp(0, 1)
    return float(metrics.psnr(clipped, image)[0]), float(metrics.ssim(clipped, image)[0])


@pytest.mark.slow
def test_figure_csv_matches_a_direct_registry_run(tmp_path):
    out = tmp_path / "figures"
    code = reproduce.main(["--figure", "3", "--images", "1", "--methods", "adjoint", "tv", "--spokes", "25",
                           "--out", str(out), "--threads", "1"])
    assert code == 0
    from PIL import Image

    with Image.open(out / "fig3.png") as png:
        assert png.size[0] > 400 and png.size[1] > 300
    rows = figures_common.read_csv(out / "fig3.csv")
    # one row per image, method and setting: 1 image x 2 methods x 1 spoke count x 2 noise levels
    assert sorted((r["method"], r["sigma"]) for r in rows) == [
        ("adjoint", "0.0125"), ("adjoint", "0.05"), ("tv", "0.0125"), ("tv", "0.05")]
    for row in rows:
        assert row["mask"] == "radial:25" and row["image_seed"] == str(TEST_PHANTOM_SEED)
        psnr, ssim = direct_run(row["method"], 25, float(row["sigma"]))
        assert float(row["psnr"]) == pytest.approx(psnr, abs=1e-3)
        assert float(row["ssim"]) == pytest.approx(ssim, abs=1e-4)
    # tv beats the zero-filled adjoint on this image at both noise levels (the curves are not flat copies)
    by_key = {(r["method"], r["sigma"]): float(r["psnr"]) for r in rows}
    assert by_key[("tv", "0.05")] > by_key[("adjoint", "0.05")] + 2
    manifest = (out / "manifest.json").read_text()
    assert '"images": 1' in manifest and '"fig3"' in manifest and '"weights": "phantom"' in manifest


def test_image_data_do_not_depend_on_the_batch():
    """Image 0's k-space data are the same whether 1 or 3 images are simulated (noise from each image's seed)."""
    setting = figures_common.radial(12, 0.05)
    one = figures_common.make_problem(figures_common.phantom_images(1), setting, torch.device("cpu"))
    three = figures_common.make_problem(figures_common.phantom_images(3), setting, torch.device("cpu"))
    assert three.y.shape[0] == 3
    assert torch.equal(one.y[0], three.y[0])
    assert not torch.equal(three.y[0], three.y[1])


def test_real_data_never_goes_to_docs_figures(tmp_path, capsys):
    code = reproduce.main(["--figure", "3", "--images", "1", "--data", str(tmp_path / "slices.h5"),
                           "--out", str(reproduce.DEFAULT_OUT)])
    assert code == 2
    assert "must not go to docs/figures" in capsys.readouterr().err


def test_unknown_weight_set_is_a_one_line_error(capsys):
    assert reproduce.main(["--weights", "no-such-set", "--images", "1"]) == 2
    assert "unknown weight set 'no-such-set'" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--figure", "4"], "unknown figure"),
    (["--methods", "nope"], "unknown method"),
    (["--cap", "range=0"], "--cap expects"),
    (["--images", "0"], "--images must be"),
])
def test_bad_arguments_give_one_line_errors(argv, message, capsys):
    with pytest.raises(SystemExit):
        reproduce.parse_arguments(argv)
    assert message in capsys.readouterr().err


def test_sampled_percent_matches_the_paper_coverage():
    assert np.isclose(figures_common.sampled_percent("radial:25"), 10.2, atol=0.05)


@pytest.mark.slow
def test_store_resumes_without_rerunning(tmp_path, monkeypatch):
    argv = ["--figure", "3", "--images", "2", "--methods", "adjoint", "--spokes", "12",
            "--store", str(tmp_path / "runs"), "--threads", "1"]
    assert reproduce.main(argv + ["--out", str(tmp_path / "first")]) == 0

    def no_runs(*args, **kwargs):
        raise AssertionError("a stored run was run again")

    monkeypatch.setattr(figures_common, "run_method", no_runs)
    assert reproduce.main(argv + ["--out", str(tmp_path / "second")]) == 0
    first = figures_common.read_csv(tmp_path / "first" / "fig3.csv")
    assert len(first) == 4 and first == figures_common.read_csv(tmp_path / "second" / "fig3.csv")
    # --stored-only draws what is stored and reports (not runs) the rest: tv was never stored
    assert reproduce.main(argv + ["--out", str(tmp_path / "third"), "--stored-only", "--methods", "adjoint", "tv"]) == 0
    third = figures_common.read_csv(tmp_path / "third" / "fig3.csv")
    assert third == first
    assert "tv at radial:12, sigma 0.05: not in the store" in (tmp_path / "third" / "manifest.json").read_text()


def test_summary_reads_the_csv(tmp_path, capsys):
    rows = [{"figure": "fig8", "mask": "radial:25", "sampled_percent": "10.2", "sigma": "0.05", "method": "tv",
             "image": i, "image_seed": 1_000_000 + i, "psnr": psnr, "ssim": 0.5, "seconds_per_image": 1,
             "batch_images": 2, "iterations": 3, "device": "cpu", "params": "{}"}
            for i, psnr in enumerate((20.0, 22.0))]
    figures_common.write_csv(tmp_path / "fig8.csv", rows)
    assert reproduce.main(["--summary", "--figure", "8", "--out", str(tmp_path)]) == 0
    # mean 21, standard error std(ddof=1)/sqrt(2) = 1.414/1.414 = 1
    assert "| radial:25 | 0.05 | tv | 2 | 21.00 ± 1.00 | 0.500 ± 0.000 |" in capsys.readouterr().out


def test_curve_points_are_unique_and_in_setting_order():
    """A setting shared by the spokes and the noise curve (25 spokes, sigma 0.05) is one point of each curve."""
    def run(setting):
        return figures_common.MethodRun("tv", setting, np.zeros(1), np.zeros(1), 0.0, 1, {}, np.zeros((1, 2, 2)), "cpu")

    settings = [figures_common.radial(25, s) for s in (0.2, 0.05, 0.0125)]
    runs = [run(settings[1]), run(settings[0]), run(settings[2])]
    ordered = reproduce._in_order(runs, "tv", sorted(settings, key=lambda s: s.sigma))
    assert [r.setting.sigma for r in ordered] == [0.0125, 0.05, 0.2]
    assert reproduce._in_order(runs, "range", settings) == []
