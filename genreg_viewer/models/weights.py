"""Network weights on disk: ``STEM.safetensors`` (the tensors) beside ``STEM.json`` (config, provenance, manifest).

The JSON file holds::

    {"format": "genreg-weights", "version": 1,
     "config": {...},                 # what is needed to rebuild the network (its constructor arguments)
     "info": {...},                   # provenance: training command, seeds, data, final losses, ...
     "tensors": {"name": [shape...]}, # manifest of the tensors stored in the .safetensors file
     "base": {"stem": "...", "prefixes": [...], "sha256": "..."}}   # optional, see below

A weights file may borrow part of its tensors from a *base* file in the same folder (e.g. the covariance decoders of
the bundled VAEs share one encoder/mean-decoder file): ``base.prefixes`` name the borrowed tensors, ``base.sha256``
pins the exact base file, so a retrained base is detected instead of silently mixing networks.

Every problem (missing file, corrupt file, tensors that do not match the config) raises :class:`WeightsError`, a
``ValueError`` with a message that names the file. Both files are written atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from ..fileio import atomic_path, atomic_write_text

FORMAT_NAME = "genreg-weights"
FORMAT_VERSION = 1
TENSOR_SUFFIX = ".safetensors"
CONFIG_SUFFIX = ".json"


#: the largest weights config (JSON) and tensor file read (the bundled ones are below 100 KB and 60 MB)
MAX_CONFIG_BYTES = 16 * 2**20
MAX_TENSOR_BYTES = 2 * 2**30


class WeightsError(ValueError):
    """A weights file that is missing, corrupt or does not match its configuration."""


def weights_stem(path: str | os.PathLike) -> Path:
    """``dir/name``, ``dir/name.safetensors`` or ``dir/name.json`` -> ``dir/name``."""
    path = Path(path)
    if path.suffix in (TENSOR_SUFFIX, CONFIG_SUFFIX):
        return path.with_suffix("")
    return path


def weights_paths(stem: str | os.PathLike) -> tuple[Path, Path]:
    """The ``(tensor file, JSON file)`` pair of a stem."""
    stem = weights_stem(stem)
    return stem.with_name(stem.name + TENSOR_SUFFIX), stem.with_name(stem.name + CONFIG_SUFFIX)


def weights_exist(stem: str | os.PathLike) -> bool:
    tensors, meta = weights_paths(stem)
    return tensors.is_file() and meta.is_file()


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _state_dict_of(module_or_state: torch.nn.Module | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    state = module_or_state.state_dict() if isinstance(module_or_state, torch.nn.Module) else module_or_state
    # safetensors wants contiguous CPU tensors that share no memory
    return {name: t.detach().to("cpu").contiguous().clone() for name, t in state.items()}


def save_weights(
    module: torch.nn.Module | Mapping[str, torch.Tensor],
    stem: str | os.PathLike,
    config: Mapping[str, Any],
    info: Mapping[str, Any] | None = None,
    *,
    base: str | os.PathLike | None = None,
    base_prefixes: tuple[str, ...] = (),
    half: bool = False,
) -> tuple[Path, Path]:
    """Write ``stem.safetensors`` and ``stem.json`` atomically; return their paths.

    ``half=True`` stores floating-point tensors as float16 (half the bytes; loading copies them into the float32
    networks, a relative rounding of at most 2^-11 per weight) and records ``"storage": "float16"`` in the JSON.

    ``config`` must be JSON-serialisable (it is what :func:`load_weights` hands back to rebuild the network). With
    ``base`` (the stem of an existing weights file in the same folder) the tensors whose names start with one of
    ``base_prefixes`` are not written; they are read from the base file at load time.
    """
    from safetensors.torch import save_file

    tensor_path, meta_path = weights_paths(stem)
    state = _state_dict_of(module)
    bad = [name for name, t in state.items()
           if (t.is_floating_point() or t.is_complex()) and not bool(t.isfinite().all())]
    if bad:  # the loaders refuse them anyway; a diverged training run must not leave such a file behind
        raise WeightsError(f"not writing {tensor_path}: {len(bad)} tensor(s) hold NaN or infinite values "
                           f"({', '.join(bad[:3])})")
    if half:
        too_large = [name for name, t in state.items()
                     if t.is_floating_point() and bool((t.abs() > torch.finfo(torch.float16).max).any())]
        if too_large:
            raise WeightsError(f"not writing {tensor_path} in float16: {', '.join(too_large[:3])} exceed its range")
        state = {name: t.half() if t.is_floating_point() else t for name, t in state.items()}
    base_entry = None
    if base is not None:
        base_tensor_path, _ = weights_paths(base)
        if weights_stem(base).resolve().parent != weights_stem(stem).resolve().parent:
            raise WeightsError(f"base weights {base_tensor_path} must be in the same folder as {tensor_path}")
        if not weights_exist(base):
            raise WeightsError(f"base weights {base_tensor_path} (and its .json) not found")
        if not base_prefixes:
            raise WeightsError("base_prefixes must name the tensors taken from the base file")
        state = {k: v for k, v in state.items() if not k.startswith(tuple(base_prefixes))}
        base_entry = {
            "stem": weights_stem(base).name,
            "prefixes": list(base_prefixes),
            "sha256": file_sha256(base_tensor_path),
        }
    document = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "config": dict(config),
        "info": dict(info or {}),
        "tensors": {name: list(t.shape) for name, t in state.items()},
    }
    if half:
        document["storage"] = "float16"
    if base_entry is not None:
        document["base"] = base_entry
    try:
        text = json.dumps(document, indent=2, sort_keys=False)
    except TypeError as exc:
        raise WeightsError(f"config/info for {meta_path} are not JSON-serialisable: {exc}") from exc
    with atomic_path(tensor_path) as tmp:
        save_file(state, str(tmp), metadata={"format": FORMAT_NAME})
    atomic_write_text(meta_path, text + "\n")
    return tensor_path, meta_path


def read_weights_json(stem: str | os.PathLike) -> dict[str, Any]:
    """The parsed JSON document of a weights file (checked for the format marker)."""
    _, meta_path = weights_paths(stem)
    if not meta_path.is_file():  # missing, a dangling link, a folder, a FIFO or device
        what = "is not a regular file" if os.path.lexists(meta_path) else "not found"
        raise WeightsError(f"weights config {meta_path} {what}")
    size = meta_path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise WeightsError(f"weights config {meta_path} has {size} bytes, more than the limit of {MAX_CONFIG_BYTES}")
    try:
        document = json.loads(meta_path.read_text(encoding="utf-8"))
    except RecursionError:
        raise WeightsError(f"weights config {meta_path} is not valid JSON: it nests too deeply") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WeightsError(f"weights config {meta_path} is not valid JSON: {exc}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT_NAME:
        raise WeightsError(f"{meta_path} is not a genreg weights file (missing \"format\": \"{FORMAT_NAME}\")")
    if document.get("version") != FORMAT_VERSION:
        raise WeightsError(f"{meta_path} has format version {document.get('version')!r}; "
                           f"this program reads {FORMAT_VERSION}")
    for key in ("config", "info", "tensors"):
        if not isinstance(document.get(key), dict):
            raise WeightsError(f"{meta_path} lacks the {key!r} section")
    for name, shape in document["tensors"].items():
        if not isinstance(shape, list) or len(shape) > 8 or not all(
                isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 2**31 for n in shape):
            shown = repr(shape) if len(repr(shape)) <= 40 else repr(shape)[:37] + "..."
            raise WeightsError(f"{meta_path}: the shape of tensor {name[:60]!r} in 'tensors' must be a list of at most "
                               f"8 sizes, got {shown}")
    return document


def _read_tensor_file(tensor_path: Path, device: str | torch.device) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    if not tensor_path.is_file():
        what = "is not a regular file" if os.path.lexists(tensor_path) else "not found"
        raise WeightsError(f"weights file {tensor_path} {what}")
    size = tensor_path.stat().st_size
    if size > MAX_TENSOR_BYTES:
        raise WeightsError(f"weights file {tensor_path} has {size} bytes, more than the limit of {MAX_TENSOR_BYTES}")
    try:
        return load_file(str(tensor_path), device=str(device))
    except Exception as exc:  # safetensors raises its own error types for truncated/corrupt headers
        raise WeightsError(f"weights file {tensor_path} is corrupt or unreadable: {exc}") from exc


#: the largest magnitude a stored floating-point weight may have (trained networks stay within a few thousand; a
#: larger value overflows float16/float32 activations within a few layers and turns every result into NaN)
MAX_WEIGHT_MAGNITUDE = 1e6
#: stored tensor types: floating point for parameters, integers for counters and flags (BatchNorm's
#: ``num_batches_tracked`` is int64, the flow's ``initialized`` uint8); bool, int8, complex and the rest are refused
ALLOWED_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int64, torch.int32, torch.uint8)


def _check_values(state: Mapping[str, torch.Tensor], tensor_path: Path) -> None:
    """Refuse tensors of a type no network stores, and floating-point tensors holding NaN, infinite or values beyond
    :data:`MAX_WEIGHT_MAGNITUDE` (one line naming the file and the first such tensor)."""
    for name, tensor in state.items():
        if tensor.dtype not in ALLOWED_DTYPES:
            kind = str(tensor.dtype).replace("torch.", "")
            raise WeightsError(f"weights file {tensor_path}: tensor {name!r} is {kind}; networks store "
                               "floating-point weights (and integer counters)")
        if tensor.is_floating_point() and tensor.numel():
            if not bool(torch.isfinite(tensor).all()):
                raise WeightsError(f"weights file {tensor_path}: tensor {name!r} holds NaN or infinite values")
            largest = float(tensor.abs().max())
            if largest > MAX_WEIGHT_MAGNITUDE:
                raise WeightsError(f"weights file {tensor_path}: tensor {name!r} holds a value of magnitude "
                                   f"{largest:.3g}, beyond the limit of {MAX_WEIGHT_MAGNITUDE:g} for a trained network")


def _check_manifest(
    state: Mapping[str, torch.Tensor], manifest: Mapping[str, Any], tensor_path: Path, meta_path: Path
) -> None:
    stored = {name: list(t.shape) for name, t in state.items()}
    expected = {name: list(shape) for name, shape in manifest.items()}
    if stored != expected:
        raise WeightsError(
            f"weights file {tensor_path} does not match its manifest {meta_path}: "
            + describe_mismatch(expected, stored)
        )


def load_weights(
    stem: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[dict[str, torch.Tensor], dict, dict]:
    """Read a weights file: ``(state_dict, config, info)``.

    Tensors borrowed from a base file (see the module docstring) are merged in; the base file must be byte-for-byte
    the one the weights were saved against.
    """
    stem = weights_stem(stem)
    tensor_path, meta_path = weights_paths(stem)
    document = read_weights_json(stem)
    state = _read_tensor_file(tensor_path, device)
    _check_manifest(state, document["tensors"], tensor_path, meta_path)
    _check_values(state, tensor_path)
    base = document.get("base")
    if base is not None:
        try:
            base_stem = stem.with_name(str(base["stem"]))
            prefixes = tuple(str(p) for p in base["prefixes"])
            sha = str(base["sha256"])
        except (KeyError, TypeError) as exc:
            raise WeightsError(f"{meta_path} has a malformed 'base' entry: {base!r}") from exc
        base_tensor_path, base_meta_path = weights_paths(base_stem)
        if not base_tensor_path.is_file():
            raise WeightsError(f"{tensor_path} needs its base weights {base_tensor_path}, which is missing")
        if file_sha256(base_tensor_path) != sha:
            raise WeightsError(
                f"base weights {base_tensor_path} changed since {tensor_path} was trained against it; "
                "retrain the covariance decoder or restore the matching base file"
            )
        base_state = _read_tensor_file(base_tensor_path, device)
        _check_manifest(base_state, read_weights_json(base_stem)["tensors"], base_tensor_path, base_meta_path)
        _check_values(base_state, base_tensor_path)
        borrowed = {k: v for k, v in base_state.items() if k.startswith(prefixes)}
        clash = sorted(set(borrowed) & set(state))
        if clash:
            raise WeightsError(f"{tensor_path} and its base {base_tensor_path} both define {clash[:5]}")
        state = {**borrowed, **state}
    return state, document["config"], document["info"]


def copy_weights_folder(source: str | os.PathLike, target: str | os.PathLike, names: list[str] | None = None,
                        half: bool = False) -> list[Path]:
    """Copy the weights ``names`` (default: every ``*.safetensors`` + ``.json`` pair) of folder ``source`` into
    ``target``, optionally stored as float16, re-pinning each file's base (which must be among the copied ones) to
    the new base file. Returns the written tensor files."""
    source, target = Path(source), Path(target)
    names = sorted(p.stem for p in source.glob("*" + TENSOR_SUFFIX)) if names is None else list(names)
    documents = {name: read_weights_json(source / name) for name in names}
    bases = {name: (doc.get("base") or {}).get("stem") for name, doc in documents.items()}
    missing = sorted({b for b in bases.values() if b and b not in documents})
    if missing:
        raise WeightsError(f"copy the base weights {missing} as well (other files in {source} are built on them)")
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for name in sorted(names, key=lambda n: bases[n] is not None):  # bases first: their new hash is pinned next
        document = documents[name]
        state, config, info = load_weights(source / name)
        prefixes = tuple((document.get("base") or {}).get("prefixes", ()))
        if bases[name]:
            state = {k: v for k, v in state.items() if not k.startswith(prefixes)}
        info = {**info, "copied_from": str(source / name)}
        written.append(save_weights(state, target / name, config, info,
                                    base=target / bases[name] if bases[name] else None, base_prefixes=prefixes,
                                    half=half)[0])
    return written


def describe_mismatch(expected: Mapping[str, Any], found: Mapping[str, Any]) -> str:
    """Human-readable difference of two ``{name: shape}`` maps (missing, unexpected, shape)."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    shapes = sorted(
        f"{name} {list(found[name])} != expected {list(expected[name])}"
        for name in set(expected) & set(found)
        if list(found[name]) != list(expected[name])
    )

    def clip(items: list[str]) -> str:
        return ", ".join(items[:6]) + (f", ... ({len(items)} in all)" if len(items) > 6 else "")

    parts = []
    if missing:
        parts.append(f"missing {clip(missing)}")
    if unexpected:
        parts.append(f"unexpected {clip(unexpected)}")
    if shapes:
        parts.append(f"shape {clip(shapes)}")
    return "; ".join(parts) or "no difference"


def check_before_building(build: Callable[[Any], torch.nn.Module], config: Any, state: Mapping[str, torch.Tensor],
                          source: str, config_name: Any = None) -> None:
    """Build the network of ``config`` on PyTorch's ``meta`` device (no memory is allocated) and compare its tensor
    names and shapes with ``state`` before the real build: a small crafted config asking for a network of many GB
    fails here in one :class:`WeightsError` line instead of allocating it. Errors of the config itself propagate
    (``TypeError``/``ValueError``/``KeyError``/``OverflowError``, as from the real build); a constructor that
    computes on its tensors (which ``meta`` cannot) is left to the check after the real build."""
    try:
        with torch.random.fork_rng(devices=[]), torch.device("meta"):
            probe = build(config)
    except (TypeError, ValueError, KeyError, OverflowError):
        raise
    except (RuntimeError, NotImplementedError):
        return
    expected = {name: list(t.shape) for name, t in probe.state_dict().items()}
    found = {name: list(t.shape) for name, t in state.items()}
    if expected != found:
        raise WeightsError(f"weights file {source} does not match config {config_name}: "
                           f"{describe_mismatch(expected, found)}")


def load_state_into(
    module: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str, config: Any = None
) -> None:
    """Copy ``state`` into ``module`` after checking names and shapes; a mismatch raises :class:`WeightsError`
    ("weights file X does not match config Y: missing ...; unexpected ...; shape ...")."""
    expected = {name: list(t.shape) for name, t in module.state_dict().items()}
    found = {name: list(t.shape) for name, t in state.items()}
    if expected != found:
        raise WeightsError(f"weights file {source} does not match config {config}: "
                           f"{describe_mismatch(expected, found)}")
    module_state = module.state_dict()
    for name, tensor in state.items():  # a float weight from an integer tensor (or the reverse) is a crafted file
        wanted = module_state[name]
        if wanted.is_floating_point() != tensor.is_floating_point():
            raise WeightsError(f"weights file {source}: tensor {name!r} is {str(tensor.dtype).replace('torch.', '')}, "
                               f"the network holds {str(wanted.dtype).replace('torch.', '')} there")
    module.load_state_dict(dict(state), strict=True)


__all__ = [
    "ALLOWED_DTYPES",
    "MAX_WEIGHT_MAGNITUDE",
    "WeightsError",
    "check_before_building",
    "copy_weights_folder",
    "describe_mismatch",
    "file_sha256",
    "load_state_into",
    "load_weights",
    "read_weights_json",
    "save_weights",
    "weights_exist",
    "weights_paths",
    "weights_stem",
]
