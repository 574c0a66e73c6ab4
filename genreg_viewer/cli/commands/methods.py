"""``genreg methods``: list the registered reconstruction methods and their parameters.

Each parameter shows the value a run will use for the setting given by ``--mask`` and ``--noise`` (default: the
app's start-up setting, 25 radial spokes, sigma 0.05) and why: a method's tuned defaults for the nearest tuned
setting (``resources/tuned/``, or the weight set's; :mod:`genreg_viewer.tuning`) replace its declared default.
"""

from __future__ import annotations

import json

from ...defaults import DEFAULT_MASK_SPEC, IMAGE_SHAPE
from ...recon import all_methods


def register(subparsers) -> None:
    p = subparsers.add_parser("methods", help="list reconstruction methods and their parameters")
    p.add_argument("--json", action="store_true")
    p.add_argument("--mask", default=DEFAULT_MASK_SPEC,
                   help=f"the setting whose defaults are shown (default {DEFAULT_MASK_SPEC})")
    p.add_argument("--noise", type=float, default=0.05, help="noise sigma of that setting (default 0.05)")
    p.set_defaults(func=run)


def setting_problem(mask_spec: str, sigma: float):
    """A problem with the mask and noise level of a setting (a blank image: only the setting matters here) and the
    weight set chosen with --weights or GENREG_WEIGHTS."""
    import numpy as np

    from ...physics import mask_from_spec, simulate_measurement
    from ...recon import Problem
    from ...weight_sets import active_weight_set

    shape = IMAGE_SHAPE
    measurement = simulate_measurement(np.zeros(shape, np.float32), mask_from_spec(mask_spec, shape, 0), sigma, 0)
    return Problem(measurement, None, seed=0, weight_set=active_weight_set())


def used_values(method, problem) -> dict:
    """The values a run of ``method`` on ``problem`` uses where they differ from the declared defaults."""
    try:
        tuned = method.defaults_for(problem)
    except Exception:  # noqa: BLE001 - a defaults table that cannot be read: runs use the declared defaults
        return {}
    declared = {p.name: p.default for p in method.parameters}
    return {name: value for name, value in tuned.items() if name in declared and value != declared[name]}


def run(args) -> int:
    methods = all_methods()
    problem = setting_problem(args.mask, args.noise)
    setting = f"{args.mask}, sigma {args.noise:g}"
    if args.json:
        out = []
        for m in methods:
            ok, why = m.available()
            out.append({
                "name": m.name, "title": m.title, "description": m.description, "category": m.category,
                "default_iterations": m.default_iterations, "available": ok, "unavailable_reason": why,
                "tune_parameter": m.tune_parameter, "parameters": [p.describe() for p in m.parameters],
                "setting": {"mask": args.mask, "sigma": args.noise}, "used": used_values(m, problem),
            })
        print(json.dumps(out, indent=2))
        return 0
    for m in methods:
        ok, why = m.available()
        print(f"{m.name:16s} {m.title}" + ("" if ok else f"  [unavailable: {why}]"))
        if m.description:
            print(f"{'':16s} {m.description}")
        used = used_values(m, problem)
        for p in m.parameters:
            rng = ""
            if p.minimum is not None or p.maximum is not None:
                low = p.minimum if p.minimum is not None else ""
                high = p.maximum if p.maximum is not None else ""
                rng = f" in [{low}, {high}]"
            if p.choices:
                rng = f", one of {', '.join(str(c) for c in p.choices)}"
            value = f"default {p.default}"
            if p.name in used:
                shown = f"{used[p.name]:g}" if isinstance(used[p.name], float) else str(used[p.name])
                value = f"runs use {shown} at {setting} (tuned default), declared default {p.default}"
            print(f"{'':18s}{p.name} = {p.display_label()} ({p.kind.__name__}, {value}{rng}): {p.help}")
    return 0
