"""Weight sets: which trained networks (and which tuned defaults) the methods use.

A weight set is a folder of ``NAME.safetensors`` + ``NAME.json`` files, optionally with ``weightset.json``
(``{"name", "description", "data", "terms", "fallback"}``), a ``NOTICE`` and a ``tuned/`` folder of tuned default
parameters (same format as ``resources/tuned``). Two sets are bundled:

* ``phantom`` (``resources/weights``): every network, trained on synthetic knee phantoms;
* ``real-knee`` (``resources/weights/real-knee``): the structured-covariance VAE trained on real knee MRI (MRNet,
  research-use terms, see its ``NOTICE``), with defaults tuned on real validation slices. Networks it does not hold
  come from its ``fallback`` set (``phantom``), and a run says so.

The default is ``auto``: each image gets the set that was trained for its kind, :func:`weight_set_for` --
``phantom`` for synthetic phantoms (the bundled samples, ``genreg phantom`` files named ``knee_phantom_*``,
``phantom:N`` specs) and ``real-knee`` for everything else (scans a user loads). ``--weights NAME_OR_FOLDER``
(CLI), the app's weight-set picker and ``GENREG_WEIGHTS`` choose one set for every image instead
(:func:`use_weight_set`; ``auto`` returns to the default).

That choice is the *edge's* default: the command line, the application and the benchmarks resolve it
(:func:`weight_set_choice`, :func:`active_weight_set`) and pass the set on explicitly -- into
:class:`~genreg_viewer.recon.Problem`, whose methods load their networks and tuned defaults from
``problem.weight_set``, and to the loaders (:func:`find_weights`, :func:`tuned_file`, ...). The core never reads the
choice implicitly: where those functions are given no set they use the bundled default set
(:func:`default_weight_set`, ``phantom``). The one exception is a method's availability check
(``ReconMethod.available()``, which has no problem to ask): it looks in the edge's chosen set, explicitly
(:func:`availability_weight_set`).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from .paths import RESOURCES_DIR

logger = logging.getLogger(__name__)

#: the set for synthetic images, for contexts with no image, and the fallback of other sets
DEFAULT_SET = "phantom"
#: the set :func:`weight_set_for` gives real scans in ``auto`` mode
REAL_SCAN_SET = "real-knee"
#: the mode in which each image gets the set trained for its kind
AUTO = "auto"
BUNDLED_SETS: dict[str, Path] = {
    "phantom": RESOURCES_DIR / "weights",
    "real-knee": RESOURCES_DIR / "weights" / "real-knee",
}
MANIFEST = "weightset.json"
#: bounds on a weight set's ``weightset.json`` (a folder given with --weights or GENREG_WEIGHTS is untrusted)
MAX_MANIFEST_BYTES = 1 * 2**20
MAX_MANIFEST_TEXT = 10_000


class WeightSetError(ValueError):
    """An unknown weight-set name or a folder that is not a weight set."""


@dataclass(frozen=True)
class WeightSet:
    """A folder of trained networks and what they were trained on."""

    name: str
    folder: Path
    description: str = ""
    data: str = ""
    terms: str = ""
    fallback: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def tuned_dir(self) -> Path:
        return self.folder / "tuned"

    @property
    def notice(self) -> Path | None:
        path = self.folder / "NOTICE"
        return path if path.is_file() else None

    def describe(self) -> dict[str, Any]:
        """JSON-friendly summary (``genreg weights --json``, ``genreg recon --json``)."""
        return {"name": self.name, "folder": str(self.folder), "description": self.description, "data": self.data,
                "terms": self.terms, "fallback": self.fallback,
                "notice": str(self.notice) if self.notice else None,
                "networks": sorted(p.stem for p in self.folder.glob("*.safetensors"))}


def _read_manifest(folder: Path, name: str) -> WeightSet:
    manifest = folder / MANIFEST
    if not os.path.lexists(manifest):
        return WeightSet(name, folder, fallback=None if name == DEFAULT_SET else DEFAULT_SET)
    try:
        if not manifest.is_file():  # a dangling link, a folder, a FIFO or device (which would block)
            raise ValueError("not a regular file")
        size = manifest.stat().st_size
        if size > MAX_MANIFEST_BYTES:
            raise ValueError(f"{size} bytes, more than the limit of {MAX_MANIFEST_BYTES}")
        document = json.loads(manifest.read_text(encoding="utf-8"))
        if not isinstance(document, dict):
            raise ValueError("not a JSON object")
    except RecursionError:
        raise WeightSetError(f"{manifest} is not a readable weight-set description: it nests too deeply") from None
    except (OSError, ValueError) as exc:
        raise WeightSetError(f"{manifest} is not a readable weight-set description: {exc}") from None
    fallback = document.get("fallback", None if name == DEFAULT_SET else DEFAULT_SET)
    if fallback is not None and (not isinstance(fallback, str) or fallback not in BUNDLED_SETS):
        shown = repr(fallback) if len(repr(fallback)) <= 60 else repr(fallback)[:57] + "..."
        raise WeightSetError(f"{manifest}: fallback must be null or one of {', '.join(BUNDLED_SETS)}, got {shown}")
    for key in ("name", "description", "data", "terms"):
        value = document.get(key, "")
        if not isinstance(value, str) or len(value) > MAX_MANIFEST_TEXT:
            raise WeightSetError(f"{manifest}: {key} must be text of at most {MAX_MANIFEST_TEXT} characters")
    return WeightSet(document.get("name") or name, folder, document.get("description", ""),
                     document.get("data", ""), document.get("terms", ""), fallback,
                     {k: v for k, v in document.items()
                      if k not in ("name", "description", "data", "terms", "fallback")})


def resolve_weight_set(spec: str | os.PathLike | None) -> WeightSet:
    """A bundled set's name (``phantom``, ``real-knee``) or a folder of weights (``None``/empty: ``phantom``)."""
    text = str(spec).strip() if spec is not None else ""
    text = text or DEFAULT_SET
    if text == AUTO:
        raise WeightSetError("'auto' is a mode, not a set: use use_weight_set('auto') or weight_set_for(image)")
    if text in BUNDLED_SETS:
        folder = BUNDLED_SETS[text]
        if not folder.is_dir():
            raise WeightSetError(f"the bundled weight set {text!r} is missing ({folder} not found)")
        return _read_manifest(folder, text)
    folder = Path(text).expanduser()
    if not folder.is_dir():
        raise WeightSetError(f"unknown weight set {text!r}: give auto, one of {', '.join(BUNDLED_SETS)} or a folder of "
                             "weights (NAME.safetensors + NAME.json)")
    if not any(folder.glob("*.safetensors")):
        raise WeightSetError(f"{folder} holds no weights (NAME.safetensors + NAME.json)")
    resolved = folder.resolve()
    for name, bundled in BUNDLED_SETS.items():
        if bundled.is_dir() and bundled.resolve() == resolved:
            return _read_manifest(bundled, name)
    return _read_manifest(folder, folder.name)


_LOCK = threading.Lock()
_ACTIVE: WeightSet | None = None
_AUTO: bool | None = None  # None: not decided yet (GENREG_WEIGHTS is read on first use)


def _initialise() -> None:
    """Read ``GENREG_WEIGHTS`` once (unset, empty or ``auto``: auto mode). Call with ``_LOCK`` held.

    A value that is not a weight set (a missing folder, a broken ``weightset.json``) leaves auto mode on and says so
    once on stderr: the application starts with the bundled sets instead of failing before its window exists (the
    command line refuses such a value first, :func:`environment_error`)."""
    global _ACTIVE, _AUTO
    if _AUTO is None:
        spec = (os.environ.get("GENREG_WEIGHTS") or AUTO).strip()
        try:
            _ACTIVE = resolve_weight_set(DEFAULT_SET if spec == AUTO else spec)
            _AUTO = spec == AUTO
        except WeightSetError as exc:
            logger.warning("genreg-viewer: GENREG_WEIGHTS: %s; using auto instead", exc)
            _ACTIVE, _AUTO = resolve_weight_set(DEFAULT_SET), True


def environment_error() -> str | None:
    """Why ``GENREG_WEIGHTS`` cannot be used (None when it is unset, ``auto`` or names a weight set); checked
    afresh, without choosing anything."""
    spec = (os.environ.get("GENREG_WEIGHTS") or AUTO).strip()
    if spec == AUTO:
        return None
    try:
        resolve_weight_set(spec)
    except WeightSetError as exc:
        return f"GENREG_WEIGHTS: {exc}"
    return None


def is_auto() -> bool:
    """True while each image gets the set trained for its kind (the default; see :func:`weight_set_for`)."""
    with _LOCK:
        _initialise()
        return bool(_AUTO)


def active_weight_set() -> WeightSet:
    """The chosen weight set; in auto mode the ``phantom`` set, for contexts with no image (an image's own set is
    :func:`weight_set_for`)."""
    with _LOCK:
        _initialise()
        assert _ACTIVE is not None
        return _ACTIVE


def use_weight_set(spec: str | os.PathLike | WeightSet | None) -> WeightSet:
    """Choose ``spec`` for every image (the next runs load their networks and tuned defaults from it); ``"auto"``
    (or ``None``) returns to auto mode. Returns the set now active for images without a source."""
    global _ACTIVE, _AUTO
    auto = spec is None or (not isinstance(spec, WeightSet) and str(spec).strip() == AUTO)
    if auto:
        chosen = resolve_weight_set(DEFAULT_SET)
    else:
        chosen = spec if isinstance(spec, WeightSet) else resolve_weight_set(spec)
    with _LOCK:
        _ACTIVE, _AUTO = chosen, auto
    return chosen


def default_weight_set() -> WeightSet:
    """The bundled default set (``phantom``): what the core uses where it is given no set."""
    return resolve_weight_set(DEFAULT_SET)


def availability_weight_set() -> WeightSet:
    """The set a method's availability check looks in when it is given none (``ReconMethod.available()``, asked
    by the command line and the application before there is a problem): the edge's chosen set,
    :func:`active_weight_set`."""
    return active_weight_set()


def is_synthetic_source(source: str | os.PathLike | None) -> bool:
    """Whether ``source`` names a synthetic phantom: a ``phantom:...`` spec, a file in the bundled samples folder
    or a ``genreg phantom`` file (``knee_phantom_*``). ``None`` (no image) counts as synthetic."""
    if source is None:
        return True
    text = str(source).strip()
    if text.startswith("phantom:") or Path(text).name.startswith("knee_phantom_"):
        return True
    try:
        return Path(text).expanduser().resolve().parent == (RESOURCES_DIR / "samples").resolve()
    except OSError:
        return False


def weight_set_for(source: str | os.PathLike | None) -> WeightSet:
    """The weight set for an image from ``source`` (a path or spec): the chosen set, or in auto mode ``phantom``
    for synthetic phantoms (:func:`is_synthetic_source`) and ``real-knee`` for real scans."""
    return weight_set_choice(source)[0]


def auto_weight_set_for(source: str | os.PathLike | None) -> WeightSet:
    """The set auto mode gives an image from ``source``, whatever the edge's choice: ``phantom`` for synthetic
    phantoms (:func:`is_synthetic_source`), ``real-knee`` for real scans."""
    return resolve_weight_set(DEFAULT_SET if is_synthetic_source(source) else REAL_SCAN_SET)


def weight_set_choice(source: str | os.PathLike | None) -> tuple[WeightSet, str]:
    """:func:`weight_set_for` and why, in words (``"auto: real scan"``, ``"auto: synthetic phantom"``, ``"chosen"``)."""
    if not is_auto():
        return active_weight_set(), "chosen"
    if is_synthetic_source(source):
        return resolve_weight_set(DEFAULT_SET), "auto: synthetic phantom"
    return resolve_weight_set(REAL_SCAN_SET), "auto: real scan"


def weight_set_chain(weight_set: WeightSet | None = None) -> list[WeightSet]:
    """The set (default: :func:`default_weight_set`) followed by its fallbacks."""
    weight_set = weight_set or default_weight_set()
    chain, seen = [weight_set], {weight_set.folder}
    while chain[-1].fallback is not None:
        nxt = resolve_weight_set(chain[-1].fallback)
        if nxt.folder in seen:
            break
        chain.append(nxt)
        seen.add(nxt.folder)
    return chain


#: the networks recorded by :func:`record_networks` in this thread (None: not recording)
_RECORDED: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("genreg_networks", default=None)


@contextlib.contextmanager
def record_networks() -> Iterator[dict[str, str]]:
    """Collect ``{network stem: name of the weight set that supplied it}`` for the networks a run uses while the
    block runs (in this thread): every stem :func:`find_weights` resolves for an explicitly given set (as the methods
    resolve their problem's networks; availability checks, which pass ``record=False``, are not counted) and every
    weights file loaded through :func:`genreg_viewer.models.cache.cached_model` (cache hits included), with the base
    file a weights file borrows tensors from. ``genreg recon --json`` reports it as ``weights.networks``."""
    networks: dict[str, str] = {}
    token = _RECORDED.set(networks)
    try:
        yield networks
    finally:
        _RECORDED.reset(token)


@contextlib.contextmanager
def not_recorded() -> Iterator[None]:
    """Nothing resolved or loaded while the block runs is recorded by :func:`record_networks` (availability
    checks)."""
    token = _RECORDED.set(None)
    try:
        yield
    finally:
        _RECORDED.reset(token)


def _set_name_of(folder: Path) -> str:
    """The name of the weight set in ``folder`` (a bundled set's name, a manifest's name, else the folder)."""
    try:
        return resolve_weight_set(folder).name
    except WeightSetError:
        return str(folder)


def note_network(stem: str | os.PathLike, weight_set: WeightSet | None = None) -> None:
    """Record the weights ``stem`` (supplied by ``weight_set``, default: the set its folder holds) and its base file
    while :func:`record_networks` is active; otherwise nothing."""
    networks = _RECORDED.get()
    if networks is None:
        return
    stem = Path(stem)
    if stem.suffix in (".safetensors", ".json"):
        stem = stem.with_suffix("")
    name = weight_set.name if weight_set is not None else _set_name_of(stem.parent)
    networks.setdefault(stem.name, name)
    try:  # not with_suffix: stems such as varnet-radial25-sigma0.05 hold dots
        base = json.loads((stem.parent / f"{stem.name}.json").read_text()).get("base")
        base_stem = str(base["stem"]) if isinstance(base, dict) else None
    except (OSError, ValueError, KeyError, TypeError):
        base_stem = None
    if base_stem:
        networks.setdefault(Path(base_stem).name, name)


def find_weights(name: str, weight_set: WeightSet | None = None, *, record: bool | None = None
                 ) -> tuple[Path, WeightSet]:
    """The stem ``FOLDER/name`` in ``weight_set`` (default: :func:`default_weight_set`), else in its fallback;
    ``(stem, the set it came from)``. When no set holds it, the given set's stem is returned (loaders then say it is
    missing). A stem found is recorded for :func:`record_networks` when ``record`` (default: when a set is given;
    availability checks pass False)."""
    record = weight_set is not None if record is None else record
    weight_set = weight_set or default_weight_set()
    for candidate in weight_set_chain(weight_set):
        stem = candidate.folder / name
        if (candidate.folder / f"{name}.safetensors").is_file() and (candidate.folder / f"{name}.json").is_file():
            if record:
                note_network(stem, candidate)
            return stem, candidate
    return weight_set.folder / name, weight_set


def weights_dir(kind_file: str, weight_set: WeightSet | None = None, *, record: bool | None = None) -> Path:
    """The folder holding ``kind_file`` (a stem name) in ``weight_set`` (default: :func:`default_weight_set`) or its
    fallback (``record``: see :func:`find_weights`)."""
    return find_weights(kind_file, weight_set, record=record)[0].parent


def tuned_file(file_name: str, weight_set: WeightSet | None = None) -> Path:
    """The tuned-defaults table ``file_name`` of ``weight_set`` (default: :func:`default_weight_set`;
    ``FOLDER/tuned/``), else the bundled ``resources/tuned`` one."""
    own = (weight_set or default_weight_set()).tuned_dir / file_name
    return own if own.is_file() else RESOURCES_DIR / "tuned" / file_name


def weights_note(stem: Path, weight_set: WeightSet | None = None) -> str:
    """``"real-knee"`` or ``"phantom (real-knee has no vae_x)"``: which set a loaded network came from, for run
    notes."""
    active = weight_set or default_weight_set()
    try:
        same = stem.parent.resolve() == active.folder.resolve()
    except OSError:
        same = False
    if same:
        return active.name
    for name, folder in BUNDLED_SETS.items():
        if folder.is_dir() and stem.parent.resolve() == folder.resolve():
            return f"{name} ({active.name} has no {stem.name})"
    return str(stem.parent)


__all__ = [
    "AUTO",
    "BUNDLED_SETS",
    "REAL_SCAN_SET",
    "DEFAULT_SET",
    "WeightSet",
    "WeightSetError",
    "active_weight_set",
    "auto_weight_set_for",
    "availability_weight_set",
    "default_weight_set",
    "find_weights",
    "is_auto",
    "is_synthetic_source",
    "not_recorded",
    "note_network",
    "record_networks",
    "resolve_weight_set",
    "tuned_file",
    "use_weight_set",
    "weight_set_chain",
    "weight_set_choice",
    "weight_set_for",
    "weights_dir",
    "weights_note",
]
