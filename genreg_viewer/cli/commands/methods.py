"""``genreg methods``: list the registered reconstruction methods and their parameters."""

from __future__ import annotations

import json

from ...recon import all_methods


def register(subparsers) -> None:
    p = subparsers.add_parser("methods", help="list reconstruction methods and their parameters")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    methods = all_methods()
    if args.json:
        out = []
        for m in methods:
            ok, why = m.available()
            out.append({
                "name": m.name, "title": m.title, "description": m.description, "category": m.category,
                "default_iterations": m.default_iterations, "available": ok, "unavailable_reason": why,
                "tune_parameter": m.tune_parameter, "parameters": [p.describe() for p in m.parameters],
            })
        print(json.dumps(out, indent=2))
        return 0
    for m in methods:
        ok, why = m.available()
        print(f"{m.name:16s} {m.title}" + ("" if ok else f"  [unavailable: {why}]"))
        if m.description:
            print(f"{'':16s} {m.description}")
        for p in m.parameters:
            rng = ""
            if p.minimum is not None or p.maximum is not None:
                rng = f" in [{p.minimum if p.minimum is not None else ''}, {p.maximum if p.maximum is not None else ''}]"
            if p.choices:
                rng = f", one of {', '.join(str(c) for c in p.choices)}"
            print(f"{'':18s}{p.name} ({p.kind.__name__}, default {p.default}{rng}): {p.help}")
    return 0
