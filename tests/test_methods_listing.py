"""``genreg methods`` tells the value a run will use: the tuned default for the setting, not only the declared one."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from genreg_viewer.cli.commands.methods import setting_problem, used_values
from genreg_viewer.recon import get_method
from genreg_viewer.tuning import nearest_setting, tuned_table

pytestmark = pytest.mark.slow  # runs the CLI and the tuned methods


def test_the_listed_value_is_the_tuned_one_a_run_uses():
    method = get_method("mean+covar")
    problem = setting_problem("radial:25", 0.05)
    used = used_values(method, problem)
    # the independent oracle: the tuned table's entry nearest to 25 spokes (10.2 %), sigma 0.05
    entry = nearest_setting(tuned_table("generative.json", None).get("mean+covar", []),
                            problem.operator.sampling_fraction, 0.05)
    assert entry is not None
    declared = {p.name: p.default for p in method.parameters}
    expected = {k: v for k, v in entry["params"].items() if v != declared.get(k)}
    assert used == expected and used


def test_genreg_methods_prints_used_values_and_labels():
    out = subprocess.run([sys.executable, "-m", "genreg_viewer.cli.main", "methods", "--json"], capture_output=True,
                         text=True, check=True).stdout
    entry = next(m for m in json.loads(out) if m["name"] == "mean+covar")
    assert entry["setting"] == {"mask": "radial:25", "sigma": 0.05}
    assert "lam" in entry["used"]
    labels = {p["name"]: p["label"] for p in entry["parameters"]}
    assert labels["lam"] == "λ" and labels["cg_iterations"] == "CG iterations"
    text = subprocess.run([sys.executable, "-m", "genreg_viewer.cli.main", "methods"], capture_output=True,
                          text=True, check=True).stdout
    assert f"runs use {entry['used']['lam']:g} at radial:25, sigma 0.05 (tuned default)" in text
