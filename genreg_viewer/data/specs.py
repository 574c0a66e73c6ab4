"""Data specs as training, evaluation and calibration take them: ``phantom:N[:SEED]`` (synthetic phantoms, made on
demand) or the path of a slice set (``.h5``, ``genreg dataset build``). Parsing only; no heavy imports."""

from __future__ import annotations


def parse_phantom_spec(spec: str) -> tuple[int, int] | None:
    """The data spec ``phantom:N[:SEED]`` (``N`` phantoms with seeds ``SEED .. SEED+N-1``, used by training and
    evaluation) -> ``(N, SEED)``; ``None`` for other specs; ``ValueError`` for a malformed one."""
    if not spec.startswith("phantom:"):
        return None
    parts = spec.split(":")[1:]
    try:
        if len(parts) not in (1, 2):
            raise ValueError
        count = int(parts[0])
        seed = int(parts[1]) if len(parts) == 2 else 0
    except ValueError:
        raise ValueError(f"phantom data must be written phantom:N or phantom:N:SEED, got {spec!r}") from None
    if count < 1 or seed < 0:
        raise ValueError(f"phantom data needs N >= 1 and SEED >= 0, got {spec!r}")
    return count, seed
