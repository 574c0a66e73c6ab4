"""The Covariance tab's "Calibrated std" check box: off by default (the raw std map), on it multiplies the run's
std map and its colour bar by the stored factor of the run's weight set and setting, and it is disabled, with the
reason as its tooltip, where no factor applies."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from genreg_viewer.application import RunRecord  # noqa: E402
from genreg_viewer.paths import RESOURCES_DIR  # noqa: E402

pytestmark = pytest.mark.slow  # the desktop app driven end to end

pytest.register_assert_rewrite("gui_helpers")
pytest_plugins = ["gui_helpers"]  # the errors and window fixtures

PHANTOM_TABLE = RESOURCES_DIR / "tuned" / "calibration.json"


def phantom_factor(method: str) -> dict:
    """The phantom set's stored entry at radial:25, sigma 0.05, read from the file itself."""
    return next(e for e in json.loads(PHANTOM_TABLE.read_text())[method]
                if e["mask"] == "radial:25" and e["sigma"] == 0.05)


def std_run(window, method: str = "mean+covar", weights: str = "phantom") -> RunRecord:
    """A finished run with a std map (a ramp up to 0.2) at radial:25, sigma 0.05."""
    std_map = np.linspace(0, 0.2, 128 * 128, dtype=np.float32).reshape(128, 128)
    setting = {"mask": "radial:25", "fraction": 0.1017, "sigma": 0.05, "seed": 0, "weights": weights}
    return RunRecord(run_id=window.state.next_run_id(), method=method, title=method, image=window.state.image,
                     params=dict(phantom_factor("mean+covar")["params"]), iterations=1, seconds=0.1, device="cpu",
                     psnr=30.0, ssim=0.9, setting=setting, arrays={"std_map": std_map})


def shown(panel) -> tuple[np.ndarray, list[float], tuple[float, float]]:
    """The std view's array, its image levels and its colour bar's levels."""
    view = panel.std_view
    return view.image(), view.image_item.levels.tolist(), tuple(view.colorbar.levels())


def test_calibrated_std_rescales_the_map_and_its_colour_bar(window, qtbot):
    panel = window.covariance
    record = std_run(window)
    window.state.add_result(record)
    assert panel.source_combo.currentData() == f"run:{record.run_id}"
    check, raw = panel.calibrated_std_check, record.arrays["std_map"]
    entry = phantom_factor("mean+covar")
    factor = entry["scale"]
    # default: off, the raw map, levels 0 .. its 99.5th percentile
    assert check.isEnabled() and not check.isChecked()
    assert check.toolTip().endswith(f"x{factor:.3g}, fitted on {entry['fitted_on']} (phantom set) at radial:25, "
                                    "sigma 0.05 for the ±2 std interval")
    high = float(np.percentile(raw, 99.5))
    image, levels, bar = shown(panel)
    np.testing.assert_array_equal(image, raw)
    assert levels == pytest.approx([0.0, high]) and bar == pytest.approx((0.0, high))
    assert panel.std_view.colorbar.axis.labelText == "std (intensity)"
    # on: the map, its levels and the colour bar times the stored factor
    check.setChecked(True)
    image, levels, bar = shown(panel)
    np.testing.assert_allclose(image, factor * raw, rtol=1e-6)
    assert levels == pytest.approx([0.0, factor * high], rel=1e-5)
    assert bar == pytest.approx((0.0, factor * high), rel=1e-5)
    assert panel.std_view.colorbar.axis.labelText == "calibrated std (intensity)"
    assert panel.std_scale is not None and panel.std_scale.scale == factor
    assert f"x {factor:.3g}" in panel.std_view.caption_label.text()
    # off again: raw
    check.setChecked(False)
    image, levels, _bar = shown(panel)
    np.testing.assert_array_equal(image, raw)
    assert levels == pytest.approx([0.0, high]) and panel.std_scale is None


def test_each_method_gets_its_own_factor(window, qtbot):
    panel = window.covariance
    panel.calibrated_std_check.setChecked(True)
    record = std_run(window, method="latent-vi")
    window.state.add_result(record)
    factor = phantom_factor("latent-vi")["scale"]
    np.testing.assert_allclose(panel.std_view.image(), factor * record.arrays["std_map"], rtol=1e-6)


@pytest.mark.parametrize("method, weights, reason", [
    ("pnp-admm", "phantom", "No stored std scale factor for pnp-admm in the phantom set"),
    ("mean+covar", "no-such-set", "The run's weight set 'no-such-set' is not available"),
])
def test_disabled_with_the_reason_where_no_factor_applies(window, qtbot, method, weights, reason):
    panel = window.covariance
    panel.calibrated_std_check.setChecked(True)  # the user's choice stays; the raw map is shown
    record = std_run(window, method=method, weights=weights)
    window.state.add_result(record)
    check = panel.calibrated_std_check
    assert not check.isEnabled() and check.toolTip().startswith(reason)
    np.testing.assert_array_equal(panel.std_view.image(), record.arrays["std_map"])
    assert panel.std_scale is None and panel.std_view.colorbar.axis.labelText == "std (intensity)"


def test_no_run_no_factor(window, qtbot):
    panel = window.covariance
    assert panel.source_combo.currentData() == "truth"
    assert not panel.calibrated_std_check.isEnabled()
    assert panel.calibrated_std_check.toolTip() == "Choose a run that reports its posterior std"


def test_a_map_saved_calibrated_is_shown_raw_until_checked(window, qtbot):
    """``genreg recon --calibrated-std --out`` stores the map times the factor and says so (``info['std_scale']``):
    unchecked shows the raw map, checked the stored factor times it (never the factor twice)."""
    panel = window.covariance
    record = std_run(window)
    factor = phantom_factor("mean+covar")["scale"]
    raw = record.arrays["std_map"].copy()
    record.arrays["std_map"] = (factor * raw).astype(np.float32)
    record.info["std_scale"] = factor
    window.state.add_result(record)
    np.testing.assert_allclose(panel.std_view.image(), raw, rtol=1e-6)
    panel.calibrated_std_check.setChecked(True)
    np.testing.assert_allclose(panel.std_view.image(), factor * raw, rtol=1e-6)
