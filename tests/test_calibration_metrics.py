"""AUSE, UCE and conformal intervals of std maps (issue 25): the sparsification error against a slow loop that removes
pixels one fraction at a time (and enumerates every order of tied std), the UCE against a hand-computed example, the
conformal quantile's held-out coverage on Gaussian errors with a known mis-scaled std (pixel and image level), the
stored quantiles, and ``genreg calibrate --conformal`` end to end on one phantom."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from genreg_viewer.cli.main import main
from genreg_viewer.evaluation import calibration as cal
from genreg_viewer.weight_sets import resolve_weight_set


# ------------------------------------------------------------------------------------------------------------- AUSE
def slow_sparsification(error, std, steps):
    """Remove floor(j n / steps) pixels by decreasing std (resp. |error|) with a Python loop; mean |e| of the rest
    over the mean |e| of all. Assumes no ties."""
    error, std = np.abs(np.ravel(error)).tolist(), np.ravel(std).tolist()
    n, total = len(error), sum(abs(e) for e in error)
    curve, oracle = [], []
    for j in range(steps):
        removed = (j * n) // steps
        for key, out in ((std, curve), (error, oracle)):
            order = sorted(range(n), key=lambda i: -key[i])
            kept = [error[i] for i in order[removed:]]
            out.append((sum(kept) / len(kept)) / (total / n))
    return np.array(curve), np.array(oracle)


def test_ause_is_zero_for_a_std_that_ranks_pixels_as_the_errors_do(rng):
    error = rng.normal(size=(3, 1, 20, 20))
    assert cal.ause(error, np.abs(error)) == pytest.approx(0.0, abs=1e-12)
    assert cal.ause(error, np.exp(3 * np.abs(error))) == pytest.approx(0.0, abs=1e-12)  # any increasing function
    _, curve, oracle = cal.sparsification_curves(error, np.abs(error))
    assert curve[0] == pytest.approx(1.0) and np.all(np.diff(oracle) <= 1e-12)  # removing the largest: it falls


@pytest.mark.parametrize("steps", [1, 7, 100])
def test_ause_matches_a_slow_loop(rng, steps):
    error = rng.normal(size=(2, 1, 9, 11))
    std = np.abs(error) + rng.uniform(0, 1.0, size=error.shape)  # informative but noisy, no ties
    fractions, curve, oracle = cal.sparsification_curves(error, std, steps)
    slow_curve, slow_oracle = slow_sparsification(error, std, steps)
    np.testing.assert_allclose(fractions, np.arange(steps) / steps)
    np.testing.assert_allclose(curve, slow_curve, rtol=1e-9)
    np.testing.assert_allclose(oracle, slow_oracle, rtol=1e-9)
    assert cal.ause(error, std, steps) == pytest.approx(float(np.mean(slow_curve - slow_oracle)), abs=1e-10)


def test_a_random_std_has_a_clearly_positive_ause_and_a_constant_one_the_same(rng):
    error = rng.normal(size=(4, 1, 32, 32))
    _, _, oracle = cal.sparsification_curves(error, np.abs(error))
    uninformative = float(np.mean(1 - oracle))  # the expected AUSE of a std independent of the errors
    assert uninformative > 0.3
    assert cal.ause(error, rng.uniform(size=error.shape)) == pytest.approx(uninformative, abs=0.03)
    # a constant std removes pixels in random order: the curve stays at 1 (its expected value)
    _, constant_curve, _ = cal.sparsification_curves(error, np.full(error.shape, 0.1))
    np.testing.assert_allclose(constant_curve, 1.0, rtol=1e-9)
    assert cal.ause(error, np.full(error.shape, 0.1)) == pytest.approx(uninformative, abs=1e-12)
    # an informative but imperfect std lies in between
    assert 0.02 < cal.ause(error, np.abs(error) + rng.uniform(0, 0.5, size=error.shape)) < uninformative / 2


def test_tied_std_is_the_mean_over_every_order_of_the_ties():
    error = np.array([0.5, 0.1, 0.9, 0.3, 0.7, 0.2])
    std = np.array([1.0, 1.0, 1.0, 0.5, 0.5, 0.5])  # two runs of ties
    steps, n = 4, error.size
    expected = np.zeros(steps)
    orders = [list(a) + list(b) for a in itertools.permutations([0, 1, 2]) for b in itertools.permutations([3, 4, 5])]
    for order in orders:
        for j in range(steps):
            kept = error[order[(j * n) // steps:]]
            expected[j] += kept.mean() / error.mean() / len(orders)
    _, curve, _ = cal.sparsification_curves(error, std, steps)
    np.testing.assert_allclose(curve, expected, rtol=1e-9)


def test_sparsification_edge_cases():
    _, curve, oracle = cal.sparsification_curves(np.zeros(5), np.ones(5))
    assert np.isnan(curve).all() and np.isnan(oracle).all() and math.isnan(cal.ause(np.zeros(5), np.ones(5)))
    with pytest.raises(ValueError, match="finite"):
        cal.ause(np.array([0.1, np.nan]), np.ones(2))
    with pytest.raises(ValueError, match="one non-empty shape"):
        cal.ause(np.ones(3), np.ones(4))


# -------------------------------------------------------------------------------------------------------------- UCE
def test_uce_by_hand():
    """var = .01, .04, .81, 1 in 2 bins of width .5: {.01, .04} and {.81, 1}; e^2 = .09, 0, 1, .25.
    UCE = 2/4 |(.09 + 0)/2 - (.01 + .04)/2| + 2/4 |(1 + .25)/2 - (.81 + 1)/2| = .01 + .14 = .15."""
    error = np.array([0.3, 0.0, -1.0, 0.5])
    std = np.array([0.1, 0.2, 0.9, 1.0])
    assert cal.uncertainty_calibration_error(error, std, bins=2) == pytest.approx(0.15, abs=1e-12)
    # one bin: |MSE - mean var| = |1.34/4 - 1.86/4| = .13
    assert cal.uncertainty_calibration_error(error, std, bins=1) == pytest.approx(0.13, abs=1e-12)
    # a constant map is one bin whatever the bin count
    assert cal.uncertainty_calibration_error(error, np.full(4, 0.5), bins=20) == pytest.approx(
        abs(np.mean(error**2) - 0.25), abs=1e-12)
    assert cal.uncertainty_calibration_error(np.zeros(3), np.zeros(3)) == 0.0


def test_uce_of_a_calibrated_and_a_halved_std(rng):
    s = rng.uniform(0.1, 1.0, size=(40, 1, 32, 32))
    error = s * rng.normal(size=s.shape)
    mean_variance = float(np.mean(s**2))
    # calibrated: only sampling noise, about sqrt(2/pi) sqrt(2 |B|) E[s^2] / n per bin: ~ 0.03 E[s^2] here
    assert cal.uncertainty_calibration_error(error, s) < 0.06 * mean_variance
    # a halved std: every bin's mean variance is a quarter of its MSE, so UCE = 3/4 E[s^2] (up to sampling)
    assert cal.uncertainty_calibration_error(error, 0.5 * s) == pytest.approx(0.75 * mean_variance, rel=0.03)
    report = cal.calibration_report(error, np.zeros_like(error), s, 0.5)
    assert report.uce == pytest.approx(cal.uncertainty_calibration_error(error, 0.5 * s))
    assert report.ause == pytest.approx(cal.calibration_report(error, np.zeros_like(error), s).ause)  # scale-free
    assert len(report.sparsification_curve) == cal.SPARSIFICATION_STEPS and report.ause_per_image > 0


# -------------------------------------------------------------------------------------------------------- conformal
def test_conformal_quantile_corrects_a_halved_std(rng):
    """Errors s Z with a reported std s / 2: q is about 2 * 1.645 for alpha 0.1 and the held-out coverage of
    x_hat +- q std is at least 90 % and close to it: up to the sampling noise of one validation and one test set
    (the guarantee is over both; its exact expectation is the next test's), three times its std
    sqrt(alpha (1 - alpha) (1/n_val + 1/n_test))."""
    s = rng.uniform(0.1, 1.0, size=(200, 1, 16, 16))
    error = s * rng.normal(size=s.shape)
    scores = cal.standardised_errors(error, np.zeros_like(error), 0.5 * s).reshape(200, -1)
    for alpha in (0.1, 0.05, 0.01):
        q = cal.conformal_quantile(scores[:100], alpha)
        target = 2 * math.sqrt(2) * _erfinv(1 - alpha)
        assert q == pytest.approx(target, rel=0.03)
        held_out = float((scores[100:] <= q).mean())
        noise = 3 * math.sqrt(alpha * (1 - alpha) * 2 / scores[100:].size)
        assert 1 - alpha - noise <= held_out <= 1 - alpha + noise
        per_image = cal.conformal_quantile(scores[:100], alpha, "image")
        assert per_image >= q and float((scores[100:] <= per_image).mean()) >= 1 - alpha - noise


def _erfinv(p: float) -> float:
    low, high = 0.0, 10.0
    for _ in range(100):
        middle = (low + high) / 2
        low, high = (middle, high) if math.erf(middle) < p else (low, middle)
    return (low + high) / 2


@pytest.mark.slow
def test_the_finite_sample_correction_holds_exactly_in_expectation(rng):
    """n = 10 validation scores, alpha = 0.1: q is the ceil(11 * 0.9) = 10th smallest, so a new exchangeable score is
    below it with probability 10/11 = 0.909 (>= 0.9; the uncorrected 9th smallest would give 9/11 = 0.818)."""
    trials = 40000
    scores = np.abs(rng.normal(size=(trials, 10)))
    fresh = np.abs(rng.normal(size=trials))
    q = np.array([cal.conformal_quantile(row[None], 0.1) for row in scores])
    assert np.array_equal(q, np.sort(scores, axis=1)[:, 9])
    assert float((fresh <= q).mean()) == pytest.approx(10 / 11, abs=0.005)


def test_per_image_risk_control_covers_images_whose_error_scale_varies(rng):
    """Images whose errors are s Z times a per-image factor (pixels of one image are not exchangeable with another's):
    with m = 19 validation images and alpha 0.1 the expected fraction of a new image covered is >= 90 %."""
    trials, m, pixels = 3000, 19, 64
    factor = rng.lognormal(0.0, 0.7, size=(trials, m + 1, 1))
    scores = np.abs(rng.normal(size=(trials, m + 1, pixels))) * factor
    covered = [float((scores[t, m] <= cal.conformal_quantile(scores[t, :m], 0.1, "image")).mean())
               for t in range(trials)]
    assert np.mean(covered) >= 0.9 - 0.005


def test_conformal_bad_input_is_one_line():
    scores = np.ones((2, 50))
    for alpha in (0.0, 1.0, -0.1, float("nan"), "0.1"):
        with pytest.raises(ValueError, match=r"alpha must be a number in \(0, 1\)"):
            cal.conformal_quantile(scores, alpha)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="100 validation pixels are too few .need at least 999."):
        cal.conformal_quantile(scores, 0.001)
    with pytest.raises(ValueError, match="2 validation images are too few .need at least 9."):
        cal.conformal_quantile(scores, 0.1, "image")
    with pytest.raises(ValueError, match="NaN"):
        cal.conformal_quantile(np.array([[0.1, np.nan] * 20]), 0.1)
    with pytest.raises(ValueError, match="zero std with a non-zero error"):
        cal.conformal_quantile(np.array([[1.0] * 30 + [np.inf] * 10]), 0.1)
    assert cal.conformal_quantile(np.array([[1.0] * 39 + [np.inf]]), 0.5) == 1.0  # an inf score is allowed
    with pytest.raises(ValueError, match="must be finite"):
        cal.standardised_errors(np.array([np.nan, 0.0]), np.zeros(2), np.ones(2))


# ------------------------------------------------------------------------------------------------ stored quantiles
def test_stored_conformal_quantiles_round_trip_and_are_checked(private_weight_set):
    weight_set = resolve_weight_set(private_weight_set)
    conformal = [{"alpha": 0.1, "q": 1.8, "level": "pixel", "pixels": 16384, "images": 1},
                 {"alpha": 0.1, "q": 2.4, "level": "image", "pixels": 163840, "images": 10}]
    cal.write_calibration({"mean+covar": {"mask": "radial:25", "sigma": 0.05, "scale": 0.9, "fitted_on": "v",
                                          "conformal": conformal}}, weight_set)
    assert cal.stored_conformal("mean+covar", "radial:25", 0.05, 0.1, weight_set=weight_set) == 1.8
    assert cal.stored_conformal("mean+covar", "radial:25", 0.05, 0.1, "image", weight_set) == 2.4
    assert cal.stored_conformal("mean+covar", "radial:25", 0.05, 0.05, weight_set=weight_set) is None
    found = cal.std_scale_for_run("mean+covar", "radial:25", 0.05, weight_set=weight_set)
    assert found is not None and found.scale == 0.9
    assert found.to_dict()["conformal"] == [{"alpha": 0.1, "q": 1.8, "level": "pixel"},
                                            {"alpha": 0.1, "q": 2.4, "level": "image"}]
    # entries without quantiles (tables written before them, like the phantom set's) still read, with none
    bundled = cal.std_scale_for_run("mean+covar", "radial:25", 0.05, weight_set=resolve_weight_set("phantom"))
    assert bundled is not None and bundled.conformal == ()
    # the real-knee table's stored quantiles come back as the file holds them
    real = resolve_weight_set("real-knee")
    entry = next(e for e in json.loads((real.folder / "tuned" / "calibration.json").read_text())["mean+covar"]
                 if e["mask"] == "radial:25" and e["sigma"] == 0.05)
    found = cal.std_scale_for_run("mean+covar", "radial:25", 0.05, weight_set=real)
    assert found is not None
    assert found.to_dict()["conformal"] == [{k: c[k] for k in ("alpha", "q", "level")} for c in entry["conformal"]]
    path = private_weight_set / "tuned" / "calibration.json"
    for bad, message in (({"alpha": 1.5, "q": 1.0}, "'alpha' must be a number in"),
                         ({"alpha": 0.1, "q": float("nan")}, "'q' must be a finite number"),
                         ({"alpha": 0.1, "q": 1.0, "level": "voxel"}, "'level' must be one of"),
                         ({"alpha": 0.1, "q": 1.0, "pixels": 0}, "'pixels' must be a positive integer"),
                         ("0.1", "must be a JSON object")):
        table = {"mean+covar": [{"mask": "radial:25", "sigma": 0.05, "scale": 0.9, "conformal": [bad]}]}
        path.write_text(json.dumps(table))
        with pytest.raises(ValueError, match=message):
            cal.read_calibration(weight_set)
        with pytest.raises(ValueError, match=message):  # and nothing malformed is written
            cal.write_calibration({"mean+covar": table["mean+covar"][0]}, weight_set)


# ------------------------------------------------------------------------------------------------------------- CLI
@pytest.mark.slow
def test_calibrate_conformal_fits_reports_writes_and_applies(private_weight_set, tmp_path, capsys):
    """mean+diagonal, one validation and one test phantom: q fitted on validation, its coverage on test, AUSE and UCE
    in the table and the report, q stored next to the scale factor, and --apply measures the stored q."""
    common = ["calibrate", "phantom:1:1000000", "--methods", "mean+diagonal", "--weights", str(private_weight_set),
              "--device", "cpu", "--quiet", "--param", "posterior_samples=4", "--param", "tolerance=0.001"]
    report_path = tmp_path / "report.json"
    assert main([*common, "--fit-on", "phantom:1:2000000", "--conformal", "0.1,0.05", "--write",
                 "--report", str(report_path)]) == 0
    out = capsys.readouterr().out
    assert "| AUSE | UCE |" in out and "| mean+diagonal | pixel, fitted on 16384 px of 1 image | 0.1 |" in out
    entry = json.loads(report_path.read_text())["methods"]["mean+diagonal"]
    raw = entry["raw"]
    assert 0 < raw["ause"] < 1 and raw["uce"] > 0 and len(raw["sparsification_curve"]) == cal.SPARSIFICATION_STEPS
    assert entry["scaled"]["ause"] == pytest.approx(raw["ause"]) and entry["validation"]["raw"]["ause"] > 0
    fitted = {c["alpha"]: c for c in entry["conformal"]}
    assert set(fitted) == {0.1, 0.05} and fitted[0.05]["q"] > fitted[0.1]["q"] > 0
    for alpha, c in fitted.items():
        assert c["nominal"] == pytest.approx(1 - alpha) and c["validation_pixels"] == 16384
        # the held-out coverage of one phantom is near nominal (a different image: no guarantee for one image)
        assert abs(c["coverage"] - (1 - alpha)) < 0.05 and c["coverage_per_image_min"] == c["coverage"]
    weight_set = resolve_weight_set(private_weight_set)
    assert cal.stored_conformal("mean+diagonal", "radial:25", 0.05, 0.1, weight_set=weight_set) == fitted[0.1]["q"]
    assert cal.stored_scale("mean+diagonal", "radial:25", 0.05, weight_set) == pytest.approx(
        entry["validation"]["fitted_scale"], abs=1e-4)
    # --apply measures the stored quantiles on the test images, which give the same coverage
    assert main([*common, "--apply", "--json"]) == 0
    applied = json.loads(capsys.readouterr().out)["methods"]["mean+diagonal"]["conformal"]
    assert [(c["alpha"], c["q"], c["source"]) for c in applied] == [(0.1, fitted[0.1]["q"], "stored"),
                                                                    (0.05, fitted[0.05]["q"], "stored")]
    assert applied[0]["coverage"] == pytest.approx(fitted[0.1]["coverage"])
    # genreg recon --calibrated-std still applies the scale factor, and lists the quantiles
    assert main(["recon", "resources/samples/knee_phantom_000.npy", "--method", "mean+diagonal", "--weights",
                 str(private_weight_set), "--device", "cpu", "--calibrated-std", "--param", "posterior_samples=2",
                 "--param", "tolerance=0.01", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["std_calibration"]["applied"] and summary["std_scale"] == cal.stored_scale(
        "mean+diagonal", "radial:25", 0.05, weight_set)
    assert [c["alpha"] for c in summary["std_calibration"]["conformal"]] == [0.1, 0.05]


@pytest.mark.parametrize("extra, message", [
    (["--conformal", "1.5", "--fit-on", "phantom:1:2000000"], "--conformal expects 1 to 8 distinct numbers in (0, 1)"),
    (["--conformal", "nan", "--fit-on", "phantom:1:2000000"], "--conformal expects"),
    (["--conformal", "0.1"], "give --fit-on VAL"),
    (["--conformal", "0.00001", "--fit-on", "phantom:1:2000000"], "16384 validation pixels are too few"),
    (["--conformal", "0.1", "--conformal-level", "image", "--fit-on", "phantom:1:2000000"],
     "1 validation images are too few (need at least 9)"),
])
def test_calibrate_conformal_bad_input_is_one_line(extra, message, capsys):
    assert main(["calibrate", "phantom:1:1000000", "--methods", "mean+diagonal", "--weights", "phantom", "--quiet",
                 *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
