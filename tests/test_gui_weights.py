"""The weight-set picker of the Method panel: choosing a set changes what runs use and what the runs record."""

from __future__ import annotations

import shutil

import pytest

from genreg_viewer.paths import RESOURCES_DIR
from genreg_viewer.weight_sets import active_weight_set, is_auto, resolve_weight_set, use_weight_set

from gui_helpers import run_and_wait  # noqa: E402

pytest_plugins = ["gui_helpers"]

pytestmark = pytest.mark.slow  # the desktop app driven end to end


@pytest.fixture
def folder_set(tmp_path):
    """A weight set of its own: the phantom stage-1 VAE copied into a folder (the rest comes from its fallback)."""
    before = None if is_auto() else active_weight_set()  # None: auto mode
    folder = tmp_path / "my-weights"
    folder.mkdir()
    for suffix in (".safetensors", ".json"):
        shutil.copy(resolve_weight_set("phantom").folder / f"vae_identity{suffix}", folder)
    yield folder
    use_weight_set(before)


def test_picker_switches_the_set_and_runs_record_it(window, qtbot, errors, folder_set):
    panel = window.method_panel
    combo = panel.weights_combo
    assert combo.findData("phantom") >= 0
    panel.select_weight_set(str(folder_set))
    assert active_weight_set().name == "my-weights" and combo.currentText() == "my-weights"
    assert str(folder_set) in combo.toolTip() and "come from: phantom" in combo.toolTip()
    panel.select_method("tv")
    panel.iterations_spin.setValue(30)
    run_and_wait(qtbot, window, 1, errors)
    assert window.state.results[-1].setting["weights"] == "my-weights"
    # choosing the bundled set in the combo box activates it, and the method stays selected
    combo.setCurrentIndex(combo.findData("phantom"))
    assert active_weight_set().name == "phantom" and panel.current_method().name == "tv"
    run_and_wait(qtbot, window, 2, errors)
    assert window.state.results[-1].setting["weights"] == "phantom"
    assert window.method_panel.settings()["weights"] == "phantom"


def test_covariance_panel_forgets_its_model_when_the_set_changes(window, folder_set):
    panel = window.covariance
    panel.model, panel.model_error = object(), "stale"
    window.method_panel.select_weight_set(str(folder_set))
    assert panel.model is None and panel.model_error is None


def test_auto_gives_opened_scans_the_real_knee_set_and_phantoms_the_phantom_set(window, qtbot, errors, tmp_path):
    use_weight_set("auto")
    panel = window.method_panel
    combo = panel.weights_combo
    panel.select_weight_set("auto")
    assert combo.currentData() == "auto" and combo.currentText() == "auto (phantom)"
    assert panel.make_job().weight_set.name == "phantom"  # the start-up phantom
    scan = tmp_path / "scan.npy"  # the pixels of a sample, but a file the user opens: a scan
    shutil.copy(RESOURCES_DIR / "samples" / "knee_phantom_002.npy", scan)
    assert window.open_path(scan)
    assert combo.currentText() == "auto (real-knee)" and "real scan" in combo.toolTip()
    assert window.covariance.image_weight_set().name == "real-knee"
    panel.select_method("tv")
    panel.iterations_spin.setValue(20)
    run_and_wait(qtbot, window, 1, errors)
    assert window.state.results[-1].setting["weights"] == "real-knee"
    combo.setCurrentIndex(combo.findData("phantom"))  # a chosen set applies to every image
    assert not is_auto() and panel.make_job().weight_set.name == "phantom"
    assert panel.settings()["weights"] == "phantom"
    combo.setCurrentIndex(combo.findData("auto"))
    assert is_auto() and panel.make_job().weight_set.name == "real-knee" and panel.settings()["weights"] == "auto"
    assert window.open_path(RESOURCES_DIR / "samples" / "knee_phantom_000.npy")
    assert panel.make_job().weight_set.name == "phantom" and combo.currentText() == "auto (phantom)"


def _tuned_entry(table, method: str, spokes: int = 25, sigma: float = 0.05) -> dict:
    """The tuned parameters of ``method`` at the setting, read from the table file itself."""
    import json

    entries = json.loads(table.read_text())[method]
    return next(e for e in entries if e["spokes"] == spokes and e["sigma"] == sigma)["params"]


def test_a_scan_in_auto_mode_shows_and_runs_the_real_knee_tuned_values(window, qtbot, errors, tmp_path):
    """The lambda/mu the Method panel shows for an opened scan are the real-knee set's tuned ones (the set the run
    uses), not the phantom set's; the job carries them; a sweep of the current image runs with that set too."""
    use_weight_set("auto")
    panel = window.method_panel
    panel.select_weight_set("auto")
    expected = _tuned_entry(RESOURCES_DIR / "weights" / "real-knee" / "tuned" / "generative.json", "mean+covar")
    phantom_values = _tuned_entry(RESOURCES_DIR / "tuned" / "generative.json", "mean+covar")
    assert (expected["lam"], expected["mu"]) != (phantom_values["lam"], phantom_values["mu"])  # the test can tell
    scan = tmp_path / "scan.npy"
    shutil.copy(RESOURCES_DIR / "samples" / "knee_phantom_002.npy", scan)
    assert window.open_path(scan)
    panel.select_method("mean+covar")
    shown = panel.form.values()
    assert (shown["lam"], shown["mu"]) == (expected["lam"], expected["mu"])
    job = panel.make_job()
    assert job.weight_set.name == "real-knee" and (job.params["lam"], job.params["mu"]) == (shown["lam"], shown["mu"])
    sweep = window.sweep
    sweep.images_combo.setCurrentIndex(sweep.images_combo.findData("current"))
    assert sweep.make_spec().weight_set.name == "real-knee"
    sweep.images_combo.setCurrentIndex(sweep.images_combo.findData("phantoms"))
    assert sweep.make_spec().weight_set.name == "phantom"
    # back on the bundled phantom, the phantom set's values
    assert window.open_path(RESOURCES_DIR / "samples" / "knee_phantom_000.npy")
    panel.select_method("mean+covar")
    shown = panel.form.values()
    assert (shown["lam"], shown["mu"]) == (phantom_values["lam"], phantom_values["mu"])
    assert errors == []
