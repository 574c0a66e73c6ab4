"""``genreg_viewer.tuning``: the grid search the benchmarks tune with, the tables it writes, and the defaults a run
reads back from them."""

from __future__ import annotations

import json
import math

import numpy as np

from genreg_viewer import tuning
from genreg_viewer.physics import radial_mask, simulate_measurement
from genreg_viewer.physics.masks import mask_from_spec
from genreg_viewer.recon import Problem, get_method
from genreg_viewer.weight_sets import WeightSet


def setting_problem(weight_set: WeightSet, spokes: int, sigma: float) -> Problem:
    mask = mask_from_spec(f"radial:{spokes}", (128, 128), 0)
    return Problem(simulate_measurement(np.zeros((128, 128), np.float32), mask, sigma, 0), None, seed=0,
                   weight_set=weight_set)


def test_interior_grid_search_grows_an_axis_until_the_optimum_is_interior():
    seen: list[dict[str, float]] = []

    def score(params: dict[str, float]) -> float:  # peak at alpha = 0.1, beta = 3 (log-concave)
        seen.append(params)
        return -math.log(params["alpha"] / 0.1) ** 2 - math.log(params["beta"] / 3.0) ** 2

    best, scores, edges = tuning.interior_grid_search(
        score, {"alpha": (1.0, 2.0, 4.0), "beta": (1.0, 2.0, 4.0), "fixed": (7.0,)},
        {"alpha": (1e-3, 10.0), "beta": (1e-3, 10.0), "fixed": (0.0, 100.0)})
    # alpha halves from 1.0 (3 significant digits) until 0.125 sits between 0.0625 and 0.25
    assert best == {"alpha": 0.125, "beta": 4.0, "fixed": 7.0} and edges == []
    assert len(scores) == len(seen) == len({tuple(p.values()) for p in seen})  # every point scored once
    assert {0.5, 0.25, 0.125, 0.0625} <= {p["alpha"] for p in seen} and 8.0 in {p["beta"] for p in seen}


def test_interior_grid_search_reports_an_axis_stopped_by_its_bound():
    best, _, edges = tuning.interior_grid_search(lambda p: -p["lam"], {"lam": (0.4, 0.8)}, {"lam": (0.1, 1.0)})
    assert best == {"lam": 0.1} and edges == ["lam"]


def test_written_tables_are_the_defaults_a_run_uses(tmp_path):
    """write_tuned -> tuned_table -> nearest setting -> run_params, in a folder weight set."""
    folder = tmp_path / "mine"
    weight_set = WeightSet("mine", folder, fallback="phantom")
    first = {(25, 0.05): {"tv": {"alpha": 0.0123}, "mean+covar": {"lam": 0.3, "mu": 2.0},
                          "pnp-admm": {"denoiser_sigma": 0.03, "rho": 1.0}, "adjoint": {}}}
    written = tuning.write_tuned(folder / "tuned", first, {"tuned_on": "test"})
    assert sorted(p.name for p in written) == ["classical.json", "generative.json", "pnp.json"]
    second = {(12, 0.05): {"tv": {"alpha": 0.02}}, (25, 0.05): {"tv": {"alpha": 0.011}}}
    tuning.write_tuned(folder / "tuned", second, {"tuned_on": "again"})

    # the file format of resources/tuned: entries of other settings kept, the same setting replaced, sorted
    classical = json.loads((folder / "tuned" / "classical.json").read_text())
    assert classical == {"tv": [
        {"spokes": 12, "sampling_fraction": float(radial_mask(12).mean()), "sigma": 0.05, "params": {"alpha": 0.02},
         "tuned_on": "again"},
        {"spokes": 25, "sampling_fraction": float(radial_mask(25).mean()), "sigma": 0.05, "params": {"alpha": 0.011},
         "tuned_on": "again"}]}
    assert set(json.loads((folder / "tuned" / "generative.json").read_text())) == {"mean+covar"}

    assert tuning.tuned_table(tuning.CLASSICAL_TABLE, weight_set) == classical
    tv = get_method("tv")
    assert tuning.run_params(tv, setting_problem(weight_set, 10, 0.05))["alpha"] == 0.02  # nearer 12 than 25
    assert tuning.run_params(tv, setting_problem(weight_set, 30, 0.05))["alpha"] == 0.011
    assert tuning.run_params(tv, setting_problem(weight_set, 30, 0.05), {"alpha": 0.5})["alpha"] == 0.5  # user wins
    covar = tuning.run_params(get_method("mean+covar"), setting_problem(weight_set, 25, 0.05))
    assert (covar["lam"], covar["mu"]) == (0.3, 2.0)


def test_merge_tuned_writes_nothing_for_no_entries(tmp_path):
    assert not tuning.merge_tuned(tmp_path / "pnp.json", {(25, 0.05): {"tv": {"alpha": 0.01}}}, ("pnp-admm",))
    assert not (tmp_path / "pnp.json").exists()


def test_the_bundled_tables_load_and_parse_for_every_set():
    from genreg_viewer.weight_sets import resolve_weight_set

    for name in ("phantom", "real-knee"):
        weight_set = resolve_weight_set(name)
        for table_name, methods in tuning.TABLE_METHODS.items():
            table = tuning.tuned_table(table_name, weight_set)
            assert set(table) <= set(methods), (name, table_name)
            for method in table:
                problem = setting_problem(weight_set, 25, 0.05)
                assert tuning.tuned_defaults(table_name, method, problem)
