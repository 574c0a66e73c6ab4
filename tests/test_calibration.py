"""Calibration of std maps: coverage against a Gaussian linear model whose posterior is known exactly, the fitted
scale against a known mis-scaling, the std/|error| correlation against its closed form, the stored factors, and
``genreg calibrate`` end to end on a phantom with a private weight set."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from genreg_viewer.cli.main import main
from genreg_viewer.evaluation import calibration as cal
from genreg_viewer.weight_sets import resolve_weight_set


def gaussian_linear_model(rng, draws: int = 6000, pixels: int = 24, measurements: int = 12, sigma: float = 0.3):
    """Draw ``x ~ N(m0, C0)``, ``y = A x + n``; return ``x``, the exact posterior mean and the exact posterior std
    (``sqrt diag`` of ``(A^T A / sigma^2 + C0^-1)^-1``), shaped ``(draws, 1, 1, pixels)``."""
    basis = rng.normal(size=(pixels, pixels))
    prior_cov = basis @ basis.T / pixels + 0.1 * np.eye(pixels)
    prior_mean = rng.normal(size=pixels)
    forward = rng.normal(size=(measurements, pixels))
    prior_precision = np.linalg.inv(prior_cov)
    posterior_cov = np.linalg.inv(forward.T @ forward / sigma**2 + prior_precision)
    x = prior_mean + rng.normal(size=(draws, pixels)) @ np.linalg.cholesky(prior_cov).T
    y = x @ forward.T + sigma * rng.normal(size=(draws, measurements))
    mean = (y @ forward / sigma**2 + prior_mean @ prior_precision) @ posterior_cov  # posterior_cov is symmetric
    std = np.broadcast_to(np.sqrt(np.diag(posterior_cov)), mean.shape)
    shape = (draws, 1, 1, pixels)
    return x.reshape(shape), mean.reshape(shape), std.reshape(shape)


@pytest.mark.slow
def test_exact_posterior_std_covers_68_95_99_7_percent(rng):
    truth, mean, std = gaussian_linear_model(rng)
    report = cal.calibration_report(truth, mean, std)
    assert report.coverage["1"] == pytest.approx(0.6827, abs=0.01)
    assert report.coverage["2"] == pytest.approx(0.9545, abs=0.005)
    assert report.coverage["3"] == pytest.approx(0.9973, abs=0.002)
    assert report.nominal["2"] == pytest.approx(0.954500, abs=1e-6)
    assert report.rms_std == pytest.approx(report.rmse, rel=0.03)
    # the whole curve follows the Gaussian's
    nominal = [cal.gaussian_coverage(k) for k in report.curve_k]
    assert np.max(np.abs(np.subtract(report.curve_coverage, nominal))) < 0.012
    assert cal.fit_scale(cal.standardised_errors(truth, mean, std)) == pytest.approx(1.0, abs=0.03)


def test_heavy_tailed_errors_cannot_be_fixed_by_one_factor(rng):
    """Laplace errors with their true std: the k = 2 factor makes +-2 std hold 95.45 % while k = 1 over-covers and
    k = 3 under-covers (the shape, not the scale, is wrong); fitting k = 1, 2, 3 together trades them off."""
    scale = 1 / math.sqrt(2)  # a Laplace(b) has std b sqrt 2: unit std
    errors = rng.laplace(0.0, scale, size=(200, 1, 32, 32))
    std = np.ones_like(errors)
    z = cal.standardised_errors(errors, np.zeros_like(errors), std)
    factor = cal.fit_scale(z)
    # P(|e| <= t) = 1 - exp(-t / b) for the Laplace: the 95.45 % quantile is -b log(0.0455)
    assert factor == pytest.approx(-scale * math.log(1 - math.erf(2 / math.sqrt(2))) / 2, rel=0.02)
    report = cal.calibration_report(errors, np.zeros_like(errors), std, factor)
    assert report.coverage["2"] == pytest.approx(0.9545, abs=0.005)
    assert report.coverage["1"] > 0.70 and report.coverage["3"] < 0.995


@pytest.mark.slow
def test_a_halved_std_is_found_out_and_refitted(rng):
    truth, mean, std = gaussian_linear_model(rng)
    report = cal.calibration_report(truth, mean, 0.5 * std)
    assert report.coverage["1"] == pytest.approx(math.erf(0.5 / math.sqrt(2)), abs=0.01)  # 38.3 %
    assert report.coverage["2"] == pytest.approx(0.6827, abs=0.01)
    z = cal.standardised_errors(truth, mean, 0.5 * std)
    scale = cal.fit_scale(z)  # k = 2: the 95.45 % quantile of z over 2
    assert scale == pytest.approx(2.0, rel=0.03)
    assert scale == pytest.approx(np.quantile(z, math.erf(2 / math.sqrt(2))) / 2, rel=0.005)
    assert cal.fit_scale(z, cal.HEADLINE_KS) == pytest.approx(2.0, rel=0.03)
    rescaled = cal.calibration_report(truth, mean, 0.5 * std, scale)
    assert rescaled.coverage["2"] == pytest.approx(0.9545, abs=0.01)


def test_correlation_of_std_and_error_matches_its_closed_form(rng):
    """With e = s Z, Z ~ N(0, 1) independent of s: corr(s, |e|) = sqrt(2/pi) sd(s) / sd(s |Z|),
    sd(s|Z|)^2 = E[s^2] - (2/pi) E[s]^2."""
    s = rng.uniform(0.1, 1.0, size=(50, 1, 32, 32))
    truth = s * rng.normal(size=s.shape)
    estimate = np.zeros_like(truth)
    expected = math.sqrt(2 / math.pi) * s.std() / math.sqrt((s**2).mean() - 2 / math.pi * s.mean() ** 2)
    report = cal.calibration_report(truth, estimate, s)
    assert report.correlation == pytest.approx(expected, abs=0.01)
    assert report.correlation_per_image == pytest.approx(expected, abs=0.02)
    shuffled = rng.permutation(s.ravel()).reshape(s.shape)  # a map that does not point at the errors
    assert abs(cal.calibration_report(truth, estimate, shuffled).correlation) < 0.02


def test_standardised_errors_edge_cases():
    z = cal.standardised_errors(np.array([[1.0, 0.5, 0.2]]), np.array([[1.0, 0.0, 0.0]]), np.array([[0.0, 0.0, 0.1]]))
    assert z.tolist() == [0.0, math.inf, 2.0]
    with pytest.raises(ValueError, match="one shape"):
        cal.standardised_errors(np.zeros(3), np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="non-negative"):
        cal.standardised_errors(np.zeros(3), np.zeros(3), -np.ones(3))


def test_stored_factors_round_trip(private_weight_set):
    weight_set = resolve_weight_set(private_weight_set)
    assert cal.stored_scale("mean+covar", "radial:25", 0.05, weight_set) is None
    cal.write_calibration({"mean+covar": {"mask": "radial:25", "sigma": 0.05, "scale": 1.5, "fitted_on": "x"}},
                          weight_set)
    cal.write_calibration({"mean+covar": {"mask": "radial:45", "sigma": 0.05, "scale": 2.5, "fitted_on": "x"}},
                          weight_set)
    cal.write_calibration({"mean+covar": {"mask": "radial:25", "sigma": 0.05, "scale": 1.25, "fitted_on": "y"}},
                          weight_set)
    assert cal.stored_scale("mean+covar", "radial:25", 0.05, weight_set) == 1.25
    assert cal.stored_scale("mean+covar", "radial:45", 0.05, weight_set) == 2.5
    assert cal.stored_scale("mean+covar", "radial:25", 0.0125, weight_set) is None
    assert len(json.loads((private_weight_set / "tuned" / "calibration.json").read_text())["mean+covar"]) == 2


@pytest.mark.slow
def test_calibrate_fits_writes_and_applies(private_weight_set, tmp_path, capsys):
    """mean+diagonal on one phantom: the factor fitted on a validation phantom is stored, the test coverage with it
    moves the way the factor says, and --apply measures with the stored factor."""
    common = ["calibrate", "phantom:1:1000000", "--methods", "mean+diagonal", "--weights", str(private_weight_set),
              "--device", "cpu", "--quiet", "--param", "posterior_samples=4", "--param", "tolerance=0.001"]
    report_path = tmp_path / "report.json"
    assert main([*common, "--fit-on", "phantom:1:2000000", "--write", "--report", str(report_path),
                 "--png", str(tmp_path / "plot.png")]) == 0
    out = capsys.readouterr().out
    assert "| mean+diagonal | raw | 1 |" in out and "written to" in out
    report = json.loads(report_path.read_text())
    entry = report["methods"]["mean+diagonal"]
    scale = entry["validation"]["fitted_scale"]
    stored = cal.stored_scale("mean+diagonal", "radial:25", 0.05, resolve_weight_set(private_weight_set))
    assert stored == pytest.approx(scale, abs=1e-4)
    raw_curve = dict(zip(entry["raw"]["curve_k"], entry["raw"]["curve_coverage"]))
    for k in ("1", "2", "3"):  # a factor above 1 widens every interval, below 1 narrows it
        assert (entry["scaled"]["coverage"][k] - entry["raw"]["coverage"][k]) * (scale - 1) >= 0
    assert 0 < entry["raw"]["coverage"]["1"] < 1 and raw_curve[0.0] == 0.0
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # --apply reads the stored factor
    assert main([*common, "--apply", "--json"]) == 0
    applied = json.loads(capsys.readouterr().out)
    assert applied["methods"]["mean+diagonal"]["scaled"]["scale"] == pytest.approx(stored)
    assert any("stored in" in note for note in applied["notes"])


def test_apply_without_a_stored_factor_is_a_clear_error(private_weight_set, capsys):
    assert main(["calibrate", "phantom:1:1000000", "--methods", "mean+diagonal", "--weights", str(private_weight_set),
                 "--apply", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "no factor for mean+diagonal" in err and "--fit-on" in err


def test_write_needs_fit_on(capsys):
    assert main(["calibrate", "phantom:1:1000000", "--write", "--quiet"]) == 2
    assert "--fit-on" in capsys.readouterr().err


def test_the_covariance_tab_plots_the_stored_curves(private_weight_set, qtbot):
    """The app's calibration plot draws the raw and scaled validation curves of the active weight set."""
    pytest.importorskip("PyQt6")
    from genreg_viewer.gui.calibration_plot import CalibrationPlot
    from genreg_viewer.weight_sets import active_weight_set, use_weight_set

    weight_set = resolve_weight_set(private_weight_set)
    curve = {"k": [0.0, 1.0, 2.0], "coverage": [0.0, 0.9, 0.99], "coverage_k123": {"1": 0.9}}
    cal.write_calibration({"mean+diagonal": {"mask": "radial:25", "sigma": 0.05, "scale": 0.56, "fitted_on": "val",
                                             "validation_raw": curve, "validation_scaled": curve}}, weight_set)
    before = active_weight_set()
    try:
        use_weight_set(weight_set)
        widget = CalibrationPlot()
        qtbot.addWidget(widget)
        widget.toggle.setChecked(True)
        assert widget.curves == [("mean+diagonal", "radial:25", 0.05, "raw"), ("mean+diagonal", "radial:25", 0.05,
                                                                               "scaled")]
        assert "val" in widget.note.text()
        (private_weight_set / "tuned" / "calibration.json").unlink()
        widget.refresh()
        assert widget.curves == [] and "No calibration stored" in widget.note.text()
    finally:
        use_weight_set(before)


@pytest.mark.slow
def test_std_maps_come_from_the_weight_set_asked_for():
    """The calibration runs the method with the networks of the set whose factor it fits (regression: it ran the
    bundled default set's VAE while reading and writing another set's calibration table)."""
    import torch

    from genreg_viewer.evaluation.evaluate import load_evaluation_images, make_batch_problem
    from genreg_viewer.physics import mask_from_spec
    from genreg_viewer.recon import run_method

    selection = load_evaluation_images("phantom:1:3000000")
    mask = mask_from_spec("radial:25", (128, 128))
    params = {"posterior_samples": 2, "tolerance": 0.01}
    real = resolve_weight_set("real-knee")
    calibrated = cal.run_with_std_maps("mean+diagonal", selection, mask, 0.05, 0, params=params, weight_set=real)
    # the oracle: the same problem built directly with that set
    direct = run_method("mean+diagonal", make_batch_problem(selection.images, selection.indices, mask, 0.05, 0,
                                                            weight_set=real), params)
    torch.testing.assert_close(calibrated.estimate, direct.image.float())
    torch.testing.assert_close(calibrated.std, torch.as_tensor(direct.extras.std_map).float())
    default = cal.run_with_std_maps("mean+diagonal", selection, mask, 0.05, 0, params=params)
    assert not torch.allclose(default.std, calibrated.std)  # another set, other networks
