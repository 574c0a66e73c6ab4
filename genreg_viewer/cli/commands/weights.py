"""``genreg weights [SET] [--json]``: the bundled weight sets (or one set or folder): what each holds, the data it
was trained on and the terms of that data."""

from __future__ import annotations

import json

from ...weight_sets import BUNDLED_SETS, WeightSetError, resolve_weight_set


def register(subparsers) -> None:
    p = subparsers.add_parser("weights", help="list the weight sets (trained networks) and their training data")
    p.add_argument("set", nargs="?", default=None, metavar="SET", help="one bundled set's name or a folder")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    names = [args.set] if args.set else list(BUNDLED_SETS)
    described = []
    for name in names:
        try:
            described.append(resolve_weight_set(name).describe())
        except WeightSetError as exc:
            if args.set:
                raise
            described.append({"name": name, "error": str(exc)})
    if args.json:
        print(json.dumps(described if not args.set else described[0], indent=2))
        return 0
    for entry in described:
        if "error" in entry:
            print(f"{entry['name']}: unavailable ({entry['error']})")
            continue
        print(f"{entry['name']}  ({entry['folder']})")
        for key in ("description", "data", "terms"):
            if entry[key]:
                print(f"  {key}: {entry[key]}")
        if entry["fallback"]:
            print(f"  networks it lacks come from: {entry['fallback']}")
        print(f"  networks: {', '.join(entry['networks']) or 'none'}")
        if entry["notice"]:
            print(f"  notice: {entry['notice']}")
    return 0
