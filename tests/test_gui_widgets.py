"""GUI building blocks: parameter forms from declarations, mask stamping, the experiment state, sweeps."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PyQt6.QtWidgets import QCheckBox, QComboBox, QLineEdit, QSpinBox  # noqa: E402

from genreg_viewer import metrics  # noqa: E402
from genreg_viewer.application.experiment import ExperimentState, ImageInfo  # noqa: E402
from genreg_viewer.application.sweeps import (  # noqa: E402
    MAX_SPOKES,
    MAX_SWEEP_VALUES,
    SweepSpec,
    parse_values,
    run_sweep,
    summarise,
    to_csv,
)
from genreg_viewer.gui.panels.sweep import SweepPanel  # noqa: E402
from genreg_viewer.gui.widgets.mask_painter import stamp_disk, stamp_stroke  # noqa: E402
from genreg_viewer.gui.widgets.param_form import LOG_STEP, ParameterForm, ScientificSpinBox  # noqa: E402
from genreg_viewer.physics import radial_mask, simulate_measurement  # noqa: E402
from genreg_viewer.recon import Parameter, ParameterError, Problem, ReconMethod, Step  # noqa: E402


class Declared(ReconMethod):
    """Not registered: one parameter of every kind."""

    name = "test-declared"
    title = "Declared"
    parameters = (
        Parameter("lam", float, 1e-3, "weight", minimum=0.0, log_scale=True),
        Parameter("step", float, 0.5, "step", minimum=0.0, maximum=1.0),
        Parameter("inner", int, 10, "inner iterations", minimum=1, maximum=100),
        Parameter("warm", bool, True, "warm start"),
        Parameter("norm", str, "l1", "norm", choices=("l1", "l2")),
        Parameter("weights", str, "dncnn", "weights name"),
    )

    def iterate(self, problem, params, iterations):
        raise NotImplementedError


# ------------------------------------------------------------------------------------------ parameter form
def test_form_builds_one_field_per_declaration(qtbot):
    form = ParameterForm(Declared())
    qtbot.addWidget(form)
    kinds = {name: type(field) for name, field in form.fields.items()}
    assert kinds == {"lam": ScientificSpinBox, "step": ScientificSpinBox, "inner": QSpinBox, "warm": QCheckBox,
                     "norm": QComboBox, "weights": QLineEdit}
    assert form.values() == {"lam": 1e-3, "step": 0.5, "inner": 10, "warm": True, "norm": "l1", "weights": "dncnn"}
    assert form.fields["inner"].maximum() == 100 and form.fields["step"].maximum() == 1.0


def test_log_scale_steps_multiply(qtbot):
    form = ParameterForm(Declared())
    qtbot.addWidget(form)
    lam = form.fields["lam"]
    lam.stepBy(4)
    assert lam.value() == pytest.approx(1e-3 * LOG_STEP**4) and lam.value() == pytest.approx(1e-2)
    lam.stepBy(-8)
    assert lam.value() == pytest.approx(1e-4)
    assert lam.textFromValue(2.5e-5) == "2.5e-05" and lam.valueFromText("3e-2") == pytest.approx(0.03)
    assert "lam" in form.edited


def test_setting_defaults_keep_user_edits(qtbot):
    form = ParameterForm(Declared())
    qtbot.addWidget(form)
    form.fields["inner"].setValue(42)  # a user edit
    form.set_defaults({"lam": 0.05, "inner": 7})
    assert form.values()["lam"] == pytest.approx(0.05) and form.values()["inner"] == 42
    form.reset({"lam": 0.05, "inner": 7})
    assert form.values()["inner"] == 7 and not form.edited


def test_form_reports_bad_text_as_parameter_error(qtbot):
    form = ParameterForm(Declared())
    qtbot.addWidget(form)
    form.set_values({"norm": "l3"})  # not a choice: the combo keeps no valid item
    with pytest.raises(ParameterError):
        form.values()


# ------------------------------------------------------------------------------------------ mask stamping
def test_stamp_disk_and_stroke():
    mask = np.zeros((16, 16), bool)
    stamp_disk(mask, 8, 8, 1.0, True)
    assert mask.sum() == 5 and mask[7:10, 8].all() and mask[8, 7:10].all()
    stamp_disk(mask, 0, 0, 2.0, True)  # clipped at the border
    assert mask[0, 0] and mask[2, 0] and not mask[2, 2]
    stroke = np.zeros((16, 16), bool)
    stamp_stroke(stroke, (3, 1), (3, 14), 0.0, True)
    assert stroke[3, 1:15].all() and stroke.sum() == 14
    stamp_stroke(stroke, (3, 5), (3, 6), 0.0, False)
    assert not stroke[3, 5:7].any()


# ------------------------------------------------------------------------------------------ state
def test_state_simulates_and_snapshots(rng):
    state = ExperimentState()
    image = rng.random((128, 128)).astype(np.float32)
    heard = []
    state.image_changed.connect(lambda: heard.append("image"))
    state.measurement_changed.connect(lambda: heard.append("measurement"))
    state.set_image(image, ImageInfo("random"))
    assert heard == ["image", "measurement"]  # psygnal calls back at once, in order
    state.set_noise(0.03, 5)
    state.set_mask(radial_mask(15), "radial:15")
    expected = simulate_measurement(image, radial_mask(15), 0.03, 5)
    np.testing.assert_allclose(state.measurement.y.numpy(), expected.y.numpy(), atol=1e-6)
    np.testing.assert_allclose(state.adjoint, expected.zero_filled()[0, 0].numpy(), atol=1e-6)
    problem = state.problem()
    state.set_mask(radial_mask(5), "radial:5")  # a later edit does not change the snapshot
    np.testing.assert_array_equal(problem.operator.mask, radial_mask(15))
    psnr, ssim = state.adjoint_metrics()
    assert psnr == pytest.approx(float(metrics.psnr(np.clip(state.adjoint, 0, 1), image)[0]))
    with pytest.raises(ValueError, match="NaN"):
        state.set_image(np.full((128, 128), np.nan, np.float32), ImageInfo("nan"))


# ------------------------------------------------------------------------------------------ sweeps
def test_parse_values():
    assert parse_values("5, 15,25", "spokes") == [5.0, 15.0, 25.0]
    assert parse_values("5:25:10", "spokes") == [5.0, 15.0, 25.0]
    assert parse_values("0.1, 0, 0.05", "noise") == [0.0, 0.05, 0.1]
    with pytest.raises(ValueError, match="cannot read"):
        parse_values("five", "spokes")
    with pytest.raises(ValueError, match="cannot read"):
        parse_values("5:1:1", "spokes")
    # values that would hang or poison a sweep are refused with a message (not an OverflowError or a stuck run)
    for text in ("nan", "inf", "5, inf", "1:inf:1"):
        with pytest.raises(ValueError, match="finite"):
            parse_values(text, "noise")
    with pytest.raises(ValueError, match=f"more than {MAX_SWEEP_VALUES} values"):
        parse_values("1:1e9:1", "spokes")


def test_sweep_spec_limits_the_spokes():
    images = np.zeros((1, 16, 16), np.float32)
    SweepSpec("spokes", [float(MAX_SPOKES)], ["adjoint"], images).validate()
    with pytest.raises(ValueError, match=f"at most {MAX_SPOKES}"):
        SweepSpec("spokes", parse_values("1e9", "spokes"), ["adjoint"], images).validate()
    with pytest.raises(ValueError, match="finite"):
        SweepSpec("noise", [float("nan")], ["adjoint"], images).validate()


def test_sweep_psnr_rises_with_spokes_and_falls_with_noise(rng):
    from genreg_viewer.data.phantom import phantom_batch

    images = phantom_batch(2, seed=3)
    spokes = SweepSpec("spokes", [5, 45], ["adjoint"], images, sigma=0.02)
    points = list(run_sweep(spokes))
    assert [p.value for p in points] == [5, 45]
    assert points[1].psnr.mean() > points[0].psnr.mean() + 1.0
    assert points[0].psnr.shape == (2,)
    noise = summarise(list(run_sweep(SweepSpec("noise", [0.0, 0.2], ["adjoint"], images, spokes=45))))
    assert noise["adjoint"]["psnr"][0] > noise["adjoint"]["psnr"][1]
    csv = to_csv(points, "spokes").splitlines()
    assert csv[0] == "method,spokes,image,psnr,ssim" and len(csv) == 1 + 2 * 2
    with pytest.raises(ValueError, match="at least one method"):
        SweepSpec("spokes", [5], [], images).validate()


class _DivergesAtHighNoise(ReconMethod):
    """Test-only method: the zero-filled image, or NaN when the noise sigma is above 0.1 (a diverged run)."""

    name = "test-diverges"
    title = "Diverges above sigma 0.1 (test)"
    default_iterations = 1

    def iterate(self, problem: Problem, params, iterations):
        x = problem.zero_filled()
        if problem.sigma > 0.1:
            x = x * float("nan")
        yield Step(1, x, 0.0)


def test_a_diverged_sweep_point_is_reported_never_plotted_or_exported(qtbot, rng, monkeypatch):
    """A method that diverges at one value: the point carries the one-line reason, the curves, the means and the CSV
    hold only the finite points, and the panel says which point failed (the reason in the tooltip)."""
    from genreg_viewer.recon import registry

    monkeypatch.setitem(registry._METHODS, _DivergesAtHighNoise.name, _DivergesAtHighNoise)
    images = rng.random((2, 32, 32)).astype(np.float32)
    points = list(run_sweep(SweepSpec("noise", [0.01, 0.2], ["adjoint", "test-diverges"], images, spokes=25)))
    failed = [p for p in points if p.failed]
    assert [(p.method, p.value) for p in failed] == [("test-diverges", 0.2)]
    assert "diverged: NaN" in failed[0].error and np.isnan(failed[0].psnr).all()
    table = summarise(points)
    assert list(table["test-diverges"]["x"]) == [0.01] and list(table["adjoint"]["x"]) == [0.01, 0.2]
    assert all(np.isfinite(series["psnr"]).all() for series in table.values())
    csv = to_csv(points, "noise").splitlines()
    assert len(csv) == 1 + 3 * 2 and not any("nan" in line for line in csv)
    # the panel
    state = ExperimentState()
    state.set_image(rng.random((128, 128)).astype(np.float32), ImageInfo("random"))
    panel = SweepPanel(state)
    qtbot.addWidget(panel)
    panel.axis_combo.setCurrentIndex(panel.axis_combo.findData("noise"))
    panel.set_checked_methods({"test-diverges"})
    panel.values_edit.setText("0.01, 0.2")
    with qtbot.waitSignal(panel.worker.finished, timeout=60_000):
        panel.start()
    label = panel.run_controls.progress_label
    assert "1 points; 1 diverged and are not plotted (test-diverges at 0.2)" in label.text()
    assert "diverged: NaN" in label.toolTip()
    curves = panel.psnr_plot.getPlotItem().listDataItems()
    assert len(curves) == 1 and list(curves[0].xData) == [0.01]
    panel.shutdown()


def test_sweep_panel_runs_in_the_background(qtbot, rng):
    state = ExperimentState()
    state.set_image(rng.random((128, 128)).astype(np.float32), ImageInfo("random"))
    panel = SweepPanel(state)
    qtbot.addWidget(panel)
    panel.set_checked_methods({"adjoint"})
    panel.values_edit.setText("5, 25")
    with qtbot.waitSignal(panel.worker.finished, timeout=60_000):
        panel.start()
        assert panel.running and not panel.run_controls.run_button.isEnabled()
    assert not panel.running and len(panel.points) == 2
    curves = panel.psnr_plot.getPlotItem().listDataItems()
    assert len(curves) == 1 and list(curves[0].xData) == [5, 25]
    assert all(math.isfinite(p.psnr.mean()) for p in panel.points)
    panel.shutdown()


def test_parameter_labels_are_written_for_people(qtbot):
    """The form's labels come from the Parameter declarations: Greek letters and abbreviations, not identifiers;
    an explicit ``label`` wins."""
    from genreg_viewer.gui.widgets.param_form import ParameterForm
    from genreg_viewer.recon import Parameter, get_method

    assert Parameter("lam", float, 1.0).display_label() == "λ"
    assert Parameter("cg_iterations", int, 40).display_label() == "CG iterations"
    assert Parameter("z_step_size", float, 1e-3).display_label() == "z step size"
    assert Parameter("learning_rate", float, 1e-3).display_label() == "Learning rate"
    assert Parameter("lam", float, 1.0, label="prior weight").display_label() == "prior weight"
    form = ParameterForm(get_method("mean+covar"))
    qtbot.addWidget(form)
    labels = [layout.itemAt(row, layout.ItemRole.LabelRole).widget().text()
              for layout in (form.layout_, form.advanced_layout) for row in range(layout.rowCount())]
    assert {"λ", "μ", "CG iterations", "z step size"} <= set(labels)
    assert not any("_" in label for label in labels)
