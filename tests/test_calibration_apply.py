"""Applying the stored std scale factors to a run: which factor applies (std_scale_for_run, checked against the bundled
calibration tables read directly) and ``genreg recon --calibrated-std``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from genreg_viewer.application.bundles import read_bundle
from genreg_viewer.cli.main import main
from genreg_viewer.evaluation import calibration as cal
from genreg_viewer.paths import RESOURCES_DIR
from genreg_viewer.weight_sets import resolve_weight_set

PHANTOM_TABLE = RESOURCES_DIR / "tuned" / "calibration.json"
REAL_KNEE_TABLE = RESOURCES_DIR / "weights" / "real-knee" / "tuned" / "calibration.json"
SAMPLE = RESOURCES_DIR / "samples" / "knee_phantom_000.npy"


def stored(path, method: str, mask: str = "radial:25", sigma: float = 0.05) -> dict:
    """The entry of the table file itself (not through the library)."""
    entries = json.loads(path.read_text())[method]
    return next(e for e in entries if e["mask"] == mask and e["sigma"] == sigma)


@pytest.fixture
def empty_weight_set(tmp_path):
    """A weight set folder with no calibration table (one placeholder network file makes it a set)."""
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "placeholder.safetensors").write_bytes(b"")
    return resolve_weight_set(folder)


@pytest.mark.parametrize("set_name, table", [("real-knee", REAL_KNEE_TABLE), ("phantom", PHANTOM_TABLE)])
@pytest.mark.parametrize("method", cal.STD_MAP_METHODS)
def test_the_bundled_factor_of_the_runs_own_setting(set_name, table, method):
    entry = stored(table, method)
    found = cal.std_scale_for_run(method, "radial:25", 0.05, params=entry["params"],
                                  weight_set=resolve_weight_set(set_name))
    assert found is not None and found.exact and not found.differing_params
    assert found.scale == entry["scale"] and found.weight_set == set_name
    assert (found.mask, found.sigma) == ("radial:25", 0.05)
    assert found.description.startswith(f"x{entry['scale']:.3g}, fitted on {entry['fitted_on']} ({set_name} set) "
                                        "at radial:25, sigma 0.05")
    assert "nearest" not in found.description


def test_real_knee_mean_covar_description():
    """The sentence a run shows, built from the table file's own entry (factor to 3 digits, the fit's data, the
    interval it was fitted for); survives a refit of the table."""
    entry = stored(REAL_KNEE_TABLE, "mean+covar")
    found = cal.std_scale_for_run("mean+covar", "radial:25", 0.05, weight_set=resolve_weight_set("real-knee"))
    assert found is not None
    intervals = " and ".join(f"±{k:g}" for k in entry["fitted_for_k"])
    assert found.description == (f"x{entry['scale']:.3g}, fitted on {entry['fitted_on']} (real-knee set) at "
                                 f"radial:25, sigma 0.05 for the {intervals} std interval")


def test_no_factor_for_other_methods_or_a_set_without_a_table(empty_weight_set):
    assert cal.std_scale_for_run("tv", "radial:25", 0.05, weight_set=resolve_weight_set("real-knee")) is None
    assert cal.std_scale_for_run("mean+covar", "radial:25", 0.05, weight_set=empty_weight_set) is None


def test_another_setting_gets_the_nearest_stored_one_and_says_so(empty_weight_set):
    """Entries at 25 and 85 spokes (10.2 % and 32.1 % of 128 x 128) and at sigma 0.05 / 0.0125: a run is matched in
    log sampling fraction and log sigma, as the tuned defaults are."""
    for mask, sigma, scale in (("radial:25", 0.05, 1.5), ("radial:85", 0.05, 3.0), ("radial:25", 0.0125, 0.5)):
        cal.write_calibration({"mean+covar": {"mask": mask, "sigma": sigma, "scale": scale, "fitted_on": "val, 2",
                                              "params": {"lam": 0.1, "posterior_samples": 16}}}, empty_weight_set)

    def scale_at(mask, sigma, fraction=None, params=None):
        found = cal.std_scale_for_run("mean+covar", mask, sigma, fraction, params, empty_weight_set)
        assert found is not None
        return found

    assert scale_at("radial:80", 0.05).scale == 3.0  # 30.2 % sampled: the 85-spoke entry
    assert scale_at("radial:20", 0.05).scale == 1.5
    assert scale_at("radial:25", 0.02).scale == 0.5  # |log(0.02/0.0125)| = 0.47 < |log(0.05/0.02)| = 0.92
    assert scale_at("random:0.25", 0.05).scale == 3.0  # |log(.25/.321)| = 0.25 < |log(.25/.102)| = 0.90
    # a given fraction wins over the spec's own (e.g. a mask drawn at another image size)
    assert scale_at("radial:25", 0.05 * 1.01, fraction=0.4).scale == 3.0
    near = scale_at("radial:80", 0.05, params={"lam": 0.3, "posterior_samples": 16})
    assert not near.exact and near.mask == "radial:85"
    assert "nearest stored setting to this run's radial:80 (30.2 % sampled), sigma 0.05" in near.description
    assert near.differing_params == {"lam": (0.1, 0.3)} and "fitted with lam=0.1 (this run: lam=0.3)" in \
        near.description
    exact = scale_at("radial:25", 0.05)
    assert exact.exact and exact.scale == 1.5 and "nearest" not in exact.description
    assert scale_at("radial:25", 0.05, fraction=0.1017).exact  # the spec's own fraction at 128 x 128


def test_the_sampled_fraction_decides_not_the_spec(empty_weight_set):
    """radial:25 on a 256 x 256 image samples 5.2 % of k-space, close to radial:12 on 128 x 128 (4.9 %) and far
    from radial:25 there (10.2 %): like the tuned defaults, the fraction picks the entry."""
    from genreg_viewer.physics import mask_from_spec

    for mask, scale in (("radial:25", 1.5), ("radial:12", 0.75)):
        cal.write_calibration({"mean+covar": {"mask": mask, "sigma": 0.05, "scale": scale, "fitted_on": "val"}},
                              empty_weight_set)
    fraction = float(mask_from_spec("radial:25", (256, 256)).mean())
    found = cal.std_scale_for_run("mean+covar", "radial:25", 0.05, fraction, None, empty_weight_set)
    assert found is not None and found.scale == 0.75 and not found.exact
    assert "nearest stored setting to this run's radial:25 (5.2 % sampled), sigma 0.05" in found.description
    # measured k-space ("data" mask) is placed by its fraction alone
    found = cal.std_scale_for_run("mean+covar", "data", 0.05, 0.1, None, empty_weight_set)
    assert found is not None and found.scale == 1.5 and not found.exact


# ------------------------------------------------------------------------------------------- genreg recon
def recon(capsys, *args) -> tuple[int, str, str]:
    code = main(["recon", str(SAMPLE), "--mask", "radial:25", "--noise", "0.05", "--device", "cpu", "--threads", "1",
                 *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow
def test_recon_calibrated_std_scales_the_saved_map(capsys, tmp_path):
    quick = ["--method", "mean+covar", "--iters", "3", "--param", "posterior_samples=3", "--weights", "phantom",
             "--json"]
    code, out, _ = recon(capsys, *quick, "--out", tmp_path / "raw.npz")
    assert code == 0
    raw_summary = json.loads(out)
    factor = stored(PHANTOM_TABLE, "mean+covar")["scale"]
    # without the flag: the raw map, and the factor that would apply
    assert raw_summary["std_scale"] == 1.0 and raw_summary["std_map"]["calibrated"] is False
    assert raw_summary["std_calibration"]["scale"] == factor and not raw_summary["std_calibration"]["applied"]
    assert "std_scale" not in raw_summary["notes"]
    code, out, _ = recon(capsys, *quick, "--out", tmp_path / "calibrated.npz", "--calibrated-std")
    assert code == 0
    summary = json.loads(out)
    assert summary["std_scale"] == factor and summary["std_calibration"]["applied"]
    assert summary["notes"]["std_scale"] == factor
    assert summary["notes"]["std_scale_description"].startswith(f"x{factor:.3g}, fitted on phantom:12:2000000")
    raw, calibrated = read_bundle(tmp_path / "raw.npz"), read_bundle(tmp_path / "calibrated.npz")
    raw_std, calibrated_std = raw.arrays["run1__std_map"], calibrated.arrays["run1__std_map"]
    assert raw_std.shape == (128, 128) and raw_std.max() > 0
    np.testing.assert_allclose(calibrated_std, factor * raw_std, rtol=1e-6)  # same seed: the same raw map
    assert calibrated.meta["runs"][0]["info"]["std_scale"] == factor
    rms = float(np.sqrt(np.mean(raw_std.astype(np.float64) ** 2)))
    assert raw_summary["std_map"]["rms"] == pytest.approx(rms, rel=1e-5)
    assert summary["std_map"]["rms"] == pytest.approx(factor * rms, rel=1e-5)


def test_recon_text_output_names_the_factor(capsys):
    code, out, _ = recon(capsys, "--method", "mean+diagonal", "--iters", "2", "--param", "posterior_samples=2",
                         "--weights", "phantom")
    assert code == 0
    factor = stored(PHANTOM_TABLE, "mean+diagonal")["scale"]
    assert f"(raw; --calibrated-std would apply x{factor:.3g}, fitted on" in out


def test_recon_without_a_std_map_keeps_its_summary(capsys):
    code, out, _ = recon(capsys, "--method", "lsq", "--iters", "2", "--json")
    assert code == 0
    assert not {"std_map", "std_scale", "std_calibration"} & set(json.loads(out))


@pytest.mark.parametrize("args, message", [
    (["--method", "tv"], "method 'tv' has no posterior std map"),
    (["--method", "mean+covar", "--param", "posterior_samples=0"], "posterior_samples=0 draws no std map"),
])
def test_recon_calibrated_std_needs_a_std_map(capsys, args, message):
    code, _, err = recon(capsys, *args, "--calibrated-std")
    assert code == 2 and message in err


def test_recon_calibrated_std_needs_a_stored_factor(capsys, empty_weight_set):
    code, _, err = recon(capsys, "--method", "mean+diagonal", "--weights", str(empty_weight_set.folder),
                         "--calibrated-std")
    assert code == 2 and "has no std scale factor for mean+diagonal" in err and "--fit-on VAL --write" in err
