"""``genreg weights [SET] [--json]``: the bundled weight sets (or one set or folder): what each holds, the data it
was trained on and the terms of that data. ``genreg weights SET --copy-to DIR [--half] [--only NAME ...]`` copies
its networks into another folder (bases re-pinned), optionally stored as float16 (how the bundled real-knee set was
made from the training output)."""

from __future__ import annotations

import json

from ...weight_sets import BUNDLED_SETS, WeightSetError, resolve_weight_set


def register(subparsers) -> None:
    p = subparsers.add_parser("weights", help="list the weight sets (trained networks) and their training data")
    p.add_argument("set", nargs="?", default=None, metavar="SET", help="one bundled set's name or a folder")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--copy-to", default=None, metavar="DIR", help="copy the set's networks into DIR")
    p.add_argument("--only", nargs="+", default=None, metavar="NAME", help="with --copy-to: only these networks")
    p.add_argument("--half", action="store_true", help="with --copy-to: store the tensors as float16")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.copy_to:
        from ...models.weights import copy_weights_folder

        if not args.set:
            raise WeightSetError("--copy-to needs the SET (a bundled name or a folder) to copy")
        written = copy_weights_folder(resolve_weight_set(args.set).folder, args.copy_to, args.only, half=args.half)
        for path in written:
            print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")
        return 0
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
    if not args.set:
        from ...weight_sets import active_weight_set, is_auto

        print("in use: " + ("auto (each image gets the set trained for its kind: phantom for synthetic phantoms, "
                            "real-knee for scans you load; --weights NAME or GENREG_WEIGHTS chooses one set)"
                            if is_auto() else f"{active_weight_set().name} (chosen by --weights or GENREG_WEIGHTS)"))
    return 0
