"""Typed run extras (issue 23, item 5): the runner turns a method's untyped ``Step.extras`` dict into a checked
:class:`RunExtras`, and reports whether the run was cancelled and the parameters it ran with as fields of the
outcome, never as extras entries."""

from __future__ import annotations

import threading
from typing import Any, Iterator

import numpy as np
import pytest
import torch

from genreg_viewer.application import RunRecord
from genreg_viewer.physics import radial_mask, simulate_measurement
from genreg_viewer.recon import Parameter, Problem, ReconMethod, ReconResult, Step, iterate_progress, run_method
from genreg_viewer.recon.base import ExtrasError, RunExtras

SIDE = 16


def small_problem() -> Problem:
    truth = torch.linspace(0, 1, SIDE * SIDE).reshape(1, 1, SIDE, SIDE)
    return Problem(simulate_measurement(truth, radial_mask(9, (SIDE, SIDE)), 0.05, seed=0), truth, seed=0)


class Reporting(ReconMethod):
    """A test-only method that halves its image each iteration and reports the given extras at the end."""

    name = "test-reporting"
    title = "Reporting"
    parameters = (Parameter("gain", float, 0.5, "factor applied each iteration", minimum=0.0),)
    default_iterations = 4

    def __init__(self, final_extras: dict[str, Any]):
        self.final_extras = final_extras

    def iterate(self, problem: Problem, params: dict[str, Any], iterations: int) -> Iterator[Step]:
        image = problem.zero_filled()
        for iteration in range(1, iterations + 1):
            image = image * params["gain"]
            extras = self.final_extras if iteration == iterations else {"phase": f"step {iteration}"}
            yield Step(iteration, image, float(image.abs().sum()), dict(extras))


def test_known_entries_are_typed_and_unknown_ones_kept():
    latent = torch.zeros(1, 4)
    extras = RunExtras.from_entries({"latent": latent, "converged": np.bool_(True), "relative_change": 1,
                                     "step": (1, 0.5), "setting_distance": None, "mine": [1, 2]})
    assert extras.latent is latent
    assert extras.converged is True and extras.relative_change == 1.0 and isinstance(extras.relative_change, float)
    assert extras.step == [1.0, 0.5]
    assert extras.setting_distance is None and "setting_distance" not in extras  # None: not reported
    assert extras.other == {"mine": [1, 2]}
    # the read-only mapping view lists the reported entries, declared ones first
    assert list(extras) == ["latent", "converged", "relative_change", "step", "mine"]
    assert extras["mine"] == [1, 2] and extras.get("std_map") is None and len(extras) == 5
    with pytest.raises(KeyError):
        extras["std_map"]


@pytest.mark.parametrize("entries, message", [
    ({"std_map": [0.1, 0.2]}, "'std_map' must be a tensor or array, got list"),
    ({"converged": 1}, "'converged' must be a bool, got int"),
    ({"relative_change": True}, "'relative_change' must be a number, got bool"),
    ({"weights": 3}, "'weights' must be a string, got int"),
    ({"cancelled": True}, "'cancelled' is reserved"),
    ({"params": {}}, "'params' is reserved"),
])
def test_wrong_entries_are_refused_by_name(entries, message):
    with pytest.raises(ExtrasError, match=message):
        RunExtras.from_entries(entries)


def test_every_field_but_other_is_a_checked_entry():
    """A field added to RunExtras without saying its kind would skip the check; a kind without a field would fail."""
    fields = [name for name in RunExtras.__dataclass_fields__ if name != "other"]
    for name in fields:
        with pytest.raises(ExtrasError, match=repr(name)):
            RunExtras.from_entries({name: object()})


def test_run_method_reports_typed_extras_and_outcome_fields():
    std_map = torch.full((1, 1, SIDE, SIDE), 0.1)
    method = Reporting({"std_map": std_map, "converged": False, "weights": "test set", "my_note": "kept"})
    result = run_method(method, small_problem(), {"gain": 0.25}, iterations=3)
    assert isinstance(result.extras, RunExtras)
    assert result.params == {"gain": 0.25} and result.cancelled is False
    assert "params" not in result.extras and "cancelled" not in result.extras
    torch.testing.assert_close(result.extras.std_map, std_map)
    assert result.extras.converged is False and result.extras.weights == "test set"
    assert result.extras.other == {"my_note": "kept"}
    assert result.summary()["notes"] == {"converged": False, "weights": "test set", "my_note": "kept"}
    # the run record splits the typed entries into arrays and scalars, as it stored the old dict
    record = RunRecord.from_result(result, 1, "run", {})
    assert set(record.arrays) == {"std_map"} and record.arrays["std_map"].shape == (SIDE, SIDE)
    assert record.info == {"converged": False, "weights": "test set", "my_note": "kept"}


def test_progress_states_carry_the_step_extras_and_the_final_one_the_outcome():
    method = Reporting({"relative_change": 1e-3})
    states = list(iterate_progress(method, small_problem(), {}, iterations=3, report_every=1))
    assert [s.extras.phase for s in states[:-1]] == ["step 1", "step 2"]
    assert all(s.params is None and not s.cancelled for s in states[:-1])
    final = states[-1]
    assert final.final and final.extras.relative_change == 1e-3
    assert final.params == {"gain": 0.5} and final.cancelled is False


def test_a_cancelled_run_says_so_in_its_outcome():
    cancel = threading.Event()
    states = []
    for state in iterate_progress(Reporting({}), small_problem(), {}, iterations=10, report_every=1, cancel=cancel):
        states.append(state)
        cancel.set()
    final = states[-1]
    assert final.final and final.cancelled and final.iteration == 2 and final.params == {"gain": 0.5}
    result = run_method(Reporting({}), small_problem(), {}, iterations=10, cancel=lambda: True)
    assert result.cancelled and result.iterations == 1 and "cancelled" not in result.extras


def test_a_method_reporting_a_wrong_entry_fails_the_run():
    with pytest.raises(ExtrasError, match="'samples' must be a tensor or array"):
        run_method(Reporting({"samples": "eight"}), small_problem(), iterations=2)


def test_a_result_built_from_an_untyped_extras_dict_is_typed():
    """Callers that still build a ReconResult with a dict get the same checked, typed extras."""
    image = torch.zeros(1, 1, SIDE, SIDE)
    result = ReconResult("tv", image, {}, 0, "cpu", 0.1, 1, [], extras={"latent": torch.ones(1, 3)})  # type: ignore[arg-type]
    assert isinstance(result.extras, RunExtras) and result.extras.latent is not None
    assert result.extras.latent.shape == (1, 3)
    with pytest.raises(ExtrasError, match="'latent'"):
        ReconResult("tv", image, {}, 0, "cpu", 0.1, 1, [], extras={"latent": "z"})  # type: ignore[arg-type]
