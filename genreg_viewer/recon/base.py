"""The reconstruction framework: parameters, problems, progress states and the method base class.

Every method is a subclass of :class:`ReconMethod` registered in :mod:`genreg_viewer.recon.registry`. A method's
:meth:`ReconMethod.iterate` is a generator of :class:`Step` objects (iteration, current image, objective); the
runner (:mod:`genreg_viewer.recon.runner`) turns them into :class:`ProgressState` objects with PSNR/SSIM and
elapsed time, thins them for display, and cancels between iterations. Methods never compute metrics themselves.
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterator, Sequence

import numpy as np
import torch

from ..physics import Measurement
from ..weight_sets import WeightSet, default_weight_set


class ParameterError(ValueError):
    """A method parameter that is unknown or out of range."""


#: words of parameter names written for people (see :meth:`Parameter.display_label`)
LABEL_WORDS = {"lam": "λ", "mu": "μ", "alpha": "α", "gamma": "γ", "rho": "ρ", "sigma": "σ", "cg": "CG",
               "tv": "TV", "mc": "Monte Carlo", "init": "initialisation"}

#: solver internals by the names methods give them: most users never change them, so the app's forms keep them in a
#: closed *Advanced* group (:meth:`Parameter.is_advanced`; a declaration's ``advanced=`` overrides the name)
ADVANCED_NAMES = frozenset({
    "z_steps", "z_optimiser", "z_step_size", "z_iterations", "cg_iterations", "tolerance", "precision_penalty",
    "penalty_samples", "warm_start", "restarts", "learning_rate", "weight_learning_rate", "relaxation", "mc_samples",
    "flow_initial_std", "init",
})

#: integer parameters are 64-bit: ``|value| < 2**63``
INT_PARAMETER_LIMIT = 2**63


@dataclass(frozen=True)
class Parameter:
    """A declared method parameter: the GUI builds a form from it, the CLI parses ``--param name=value``."""

    name: str
    kind: type  # float, int, bool or str
    default: Any
    help: str = ""
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple | None = None
    log_scale: bool = False  #: GUI spin boxes step multiplicatively; tuning grids are log-spaced
    label: str = ""  #: what people read in forms and tables (default: :meth:`display_label` from the name)
    advanced: bool | None = None  #: a solver internal (default: the name is one of :data:`ADVANCED_NAMES`)

    def is_advanced(self) -> bool:
        """Whether forms show this parameter in their *Advanced* group (solver internals)."""
        return self.name in ADVANCED_NAMES if self.advanced is None else self.advanced

    def display_label(self) -> str:
        """``label``, else the name in words: ``lam`` -> ``λ``, ``cg_iterations`` -> ``CG iterations``,
        ``z_step_size`` -> ``z step size`` (Greek letters and abbreviations from :data:`LABEL_WORDS`)."""
        if self.label:
            return self.label
        words = [LABEL_WORDS.get(word, word) for word in self.name.split("_")]
        first = words[0]
        if first.isascii() and first.islower() and len(first) > 1:  # an ordinary word starts with a capital
            words[0] = first[:1].upper() + first[1:]
        return " ".join(words)

    def parse(self, value: Any) -> Any:
        """Convert ``value`` (text or number) to this parameter's type and check its range."""
        parsed: Any
        try:
            if self.kind is bool:
                if isinstance(value, str):
                    lowered = value.strip().lower()
                    if lowered not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                        raise ValueError(value)
                    parsed = lowered in ("1", "true", "yes", "on")
                else:
                    parsed = bool(value)
            elif self.kind is int:
                parsed = _parse_int(value)
            elif self.kind is float:
                parsed = float(value)
                if not math.isfinite(parsed):
                    raise ValueError(value)
            else:
                parsed = str(value)
        except (TypeError, ValueError, OverflowError):
            shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
            expected = {int: "int (a whole number, |value| < 2**63)", float: "float (a finite number)"}.get(
                self.kind, self.kind.__name__)
            raise ParameterError(f"parameter {self.name!r} expects {expected}, got {shown}") from None
        if self.choices is not None and parsed not in self.choices:
            raise ParameterError(f"parameter {self.name!r} must be one of {list(self.choices)}, got {parsed!r}")
        if self.minimum is not None and parsed < self.minimum:
            raise ParameterError(f"parameter {self.name!r} must be >= {self.minimum}, got {parsed}")
        if self.maximum is not None and parsed > self.maximum:
            raise ParameterError(f"parameter {self.name!r} must be <= {self.maximum}, got {parsed}")
        return parsed

    def describe(self) -> dict:
        """JSON-friendly description (``genreg methods --json``)."""
        return {
            "name": self.name,
            "label": self.display_label(),
            "type": self.kind.__name__,
            "default": self.default,
            "minimum": self.minimum,
            "maximum": self.maximum,
            "choices": list(self.choices) if self.choices else None,
            "log_scale": self.log_scale,
            "advanced": self.is_advanced(),
            "help": self.help,
        }


def _parse_int(value: Any) -> int:
    """An integer from an ``int``, a finite float (truncated, as ``int()`` does) or text such as ``"12"`` or
    ``"1e3"`` that names a whole number; ``ValueError`` for ``inf``, ``nan``, ``1e400``, ``"2.5"``, booleans and
    anything outside the 64-bit range."""
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, (int, np.integer)):
        parsed = int(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            parsed = int(text)
        except ValueError:
            number = float(text)
            if not math.isfinite(number) or number != int(number):
                raise ValueError(value) from None
            parsed = int(number)
    else:
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(value)
        parsed = int(number)
    if not -INT_PARAMETER_LIMIT < parsed < INT_PARAMETER_LIMIT:
        raise ValueError(value)
    return parsed


@dataclass
class Problem:
    """What a method reconstructs from: the measurement, optionally the ground truth, the device, a seed and the
    weight set whose trained networks and tuned defaults the methods use (see :mod:`genreg_viewer.weight_sets`).
    The caller passes the set (the command line and the application resolve ``--weights``, ``GENREG_WEIGHTS`` or
    the app's picker and pass it); without one the bundled default set is used, never a process-wide choice."""

    measurement: Measurement
    ground_truth: torch.Tensor | None = None  #: real ``(B, 1, H, W)`` in [0, 1], only for metrics and tuning
    seed: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    weight_set: WeightSet | None = None

    def __post_init__(self) -> None:
        if self.weight_set is None:
            self.weight_set = default_weight_set()
        self.device = torch.device(self.device)
        if self.measurement.y.device != self.device:
            self.measurement = self.measurement.to(self.device)
        if self.ground_truth is not None:
            gt = torch.as_tensor(self.ground_truth, dtype=torch.float32)
            while gt.ndim < 4:
                gt = gt.unsqueeze(0)
            self.ground_truth = gt.to(self.device)

    @property
    def y(self) -> torch.Tensor:
        return self.measurement.y

    @property
    def operator(self):
        return self.measurement.operator

    @property
    def sigma(self) -> float:
        return self.measurement.sigma

    @property
    def batch_size(self) -> int:
        return int(self.measurement.y.shape[0])

    def zero_filled(self) -> torch.Tensor:
        """``Re(A^H y)``, the usual initialisation."""
        return self.measurement.zero_filled()

    def rows(self, index: torch.Tensor) -> "Problem":
        """The sub-problem of the images ``index`` (same operator, seed and device)."""
        measurement = Measurement(self.y[index], self.operator, self.sigma, self.measurement.seed)
        truth = None if self.ground_truth is None else self.ground_truth[index]
        return Problem(measurement, truth, self.seed, self.device, self.weight_set)

    def generator(self, offset: int = 0) -> torch.Generator:
        """A CPU generator seeded from the problem seed (draw on CPU, then move: same result on every device)."""
        return torch.Generator().manual_seed(int(self.seed) + offset)


@dataclass
class Step:
    """What a method yields each iteration."""

    iteration: int
    image: torch.Tensor  #: real ``(B, 1, H, W)``
    objective: float | None = None
    #: the entries :class:`RunExtras` declares (a plain dict: the runner checks and types it)
    extras: dict[str, Any] = field(default_factory=dict)


#: an array a method reports (tensors from the methods; numpy arrays where a caller builds a result itself)
Array = torch.Tensor | np.ndarray


class ExtrasError(TypeError):
    """A method reported an extras entry of the wrong type (a programming error in the method, named in one line)."""


@dataclass
class RunExtras(Mapping[str, Any]):
    """What a run reports besides its image, objective and metrics: one typed, optional field per known entry.

    Methods yield their extras as a plain dict in each :class:`Step` (the generators stay simple); the runner turns
    it into this declaration with :meth:`from_entries`, which checks each known entry's type, so every reader sees
    one documented shape. An entry this class does not declare is kept in :attr:`other` rather than lost.

    ``None`` means "not reported". Whether a run was cancelled and the parameters it ran with are not extras: they
    are fields of :class:`ProgressState` and :class:`ReconResult`.

    The object is also a read-only mapping of the reported entries (``"std_map" in extras``, ``extras["latent"]``,
    ``extras.items()``) for generic readers: the JSON summary's notes and the run records, which split the entries
    into arrays and scalars for storage.
    """

    latent: Array | None = None  #: ``(B, D)``: the latent code the method ended at (its own model's space)
    latent_std: Array | None = None  #: ``(B, D)``: latent-vi's posterior std in latent space
    std_map: Array | None = None  #: ``(B, 1, H, W)``: posterior standard deviation of each pixel
    samples: Array | None = None  #: ``(K, B, 1, H, W)``: the first posterior samples, for the app's flip-book
    converged: bool | None = None  #: whether the method's convergence test fired before its iteration budget
    weights: str | None = None  #: which trained weights the method used (a note for people)
    relative_change: float | None = None  #: the latest relative change of the iterate (methods that stop on it)
    step: list[float] | None = None  #: the step size of each image (projected gradient descent)
    phase: str | None = None  #: the stage a multi-stage method is in ("warm start (mean+identity)", "latent", ...)
    trained_setting: str | None = None  #: the variational network's trained setting that was used
    exact_setting: bool | None = None  #: whether that setting is the requested one (else the nearest)
    setting_distance: float | None = None  #: how far the used setting is from the requested one
    message: str | None = None  #: a one-line note for people about how the run was done
    #: entries that no field declares (a new method's own notes), kept as reported
    other: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_entries(cls, entries: Mapping[str, Any]) -> "RunExtras":
        """The typed extras of a method's ``Step.extras`` dict (or of an old untyped extras dict).

        Known entries are checked against their declared type (:class:`ExtrasError` names a wrong one; ints are
        accepted for floats); ``None`` values count as not reported; other names go to :attr:`other`.
        ``cancelled`` and ``params`` are refused: they belong to the run's outcome, not to a method's extras."""
        declared: dict[str, Any] = {}
        other: dict[str, Any] = {}
        for name, value in entries.items():
            if name in RESERVED_EXTRAS:
                raise ExtrasError(f"extras entry {name!r} is reserved: the runner reports it as a field of the run")
            if name not in _EXTRAS_KINDS:
                other[name] = value
            elif value is not None:
                declared[name] = _checked_entry(name, value)
        return cls(**declared, other=other)

    def on_cpu(self) -> "RunExtras":
        """A copy whose tensors are detached and on the CPU (what a finished :class:`ReconResult` holds)."""
        moved: dict[str, Any] = {name: value.detach().cpu() for name, value in self._declared().items()
                                 if isinstance(value, torch.Tensor)}
        other = {name: (value.detach().cpu() if isinstance(value, torch.Tensor) else value)
                 for name, value in self.other.items()}
        return dataclasses.replace(self, **moved, other=other)

    def _declared(self) -> dict[str, Any]:
        """The reported declared entries, in declaration order."""
        return {name: getattr(self, name) for name in _EXTRAS_KINDS if getattr(self, name) is not None}

    # the read-only mapping of reported entries: declared ones first, then the others
    def __getitem__(self, name: str) -> Any:
        if name in _EXTRAS_KINDS:
            value = getattr(self, name)
            if value is not None:
                return value
        elif name in self.other:
            return self.other[name]
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        yield from self._declared()
        yield from (name for name in self.other if name not in _EXTRAS_KINDS)

    def __len__(self) -> int:
        return sum(1 for _ in self)


#: names a method may not use for an extras entry: the runner reports them as fields of the run
RESERVED_EXTRAS = frozenset({"cancelled", "params"})

#: the declared entries of :class:`RunExtras` and what each must be: "array", "bool", "float", "str", "floats"
_EXTRAS_KINDS: dict[str, str] = {
    "latent": "array", "latent_std": "array", "std_map": "array", "samples": "array", "converged": "bool",
    "weights": "str", "relative_change": "float", "step": "floats", "phase": "str", "trained_setting": "str",
    "exact_setting": "bool", "setting_distance": "float", "message": "str",
}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _checked_entry(name: str, value: Any) -> Any:
    """``value`` as the declared kind of extras entry ``name``; :class:`ExtrasError` when it is not one."""
    kind = _EXTRAS_KINDS[name]
    if kind == "array" and isinstance(value, (torch.Tensor, np.ndarray)):
        return value
    if kind == "bool" and isinstance(value, (bool, np.bool_)):
        return bool(value)
    if kind == "float" and (_is_number(value) or isinstance(value, np.floating)):
        return float(value)
    if kind == "str" and isinstance(value, str):
        return value
    if kind == "floats" and isinstance(value, (list, tuple)) and all(_is_number(v) for v in value):
        return [float(v) for v in value]
    expected = {"array": "a tensor or array", "bool": "a bool", "float": "a number", "str": "a string",
                "floats": "a list of numbers"}[kind]
    raise ExtrasError(f"extras entry {name!r} must be {expected}, got {type(value).__name__}")


@dataclass
class ProgressState:
    """A progress report: iteration, current image, objective and (with a ground truth) metrics.

    The final state (``final``) also says whether the run was cancelled and carries the parameters it ran with
    (the method's defaults for the problem, overridden by the caller's)."""

    iteration: int
    total_iterations: int | None
    image: torch.Tensor
    objective: float | None
    elapsed: float
    psnr: float | None = None
    ssim: float | None = None
    extras: RunExtras = field(default_factory=RunExtras)
    final: bool = False
    cancelled: bool = False  #: on the final state: the run was cancelled before its last iteration
    params: dict[str, Any] | None = None  #: on the final state: the resolved parameters of the run

    def image_numpy(self, index: int = 0) -> np.ndarray:
        return self.image[index, 0].detach().float().cpu().numpy()

    @property
    def eta(self) -> float | None:
        """Seconds left, extrapolated linearly from the iterations done."""
        if not self.total_iterations or self.iteration <= 0:
            return None
        return max(self.elapsed / self.iteration * (self.total_iterations - self.iteration), 0.0)


@dataclass
class ReconResult:
    """A finished (or cancelled) reconstruction."""

    method: str
    image: torch.Tensor  #: real ``(B, 1, H, W)`` on the CPU
    params: dict[str, Any]
    seed: int
    device: str
    seconds: float
    iterations: int
    history: list[dict[str, Any]]
    extras: RunExtras = field(default_factory=RunExtras)
    psnr: float | None = None
    ssim: float | None = None
    cancelled: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.extras, RunExtras):  # an untyped dict from older callers: declare its entries
            self.extras = RunExtras.from_entries(self.extras)

    def image_numpy(self, index: int = 0) -> np.ndarray:
        return self.image[index, 0].numpy()

    def summary(self) -> dict[str, Any]:
        """The JSON summary printed by ``genreg recon --json`` (``notes``: the scalar extras, e.g. which trained
        variational network was used; arrays such as ``std_map`` go to ``--out``)."""
        return {
            "method": self.method,
            "psnr": self.psnr,
            "ssim": self.ssim,
            "seconds": round(self.seconds, 4),
            "iterations": self.iterations,
            "device": self.device,
            "params": self.params,
            "seed": self.seed,
            "cancelled": self.cancelled,
            "notes": {k: v for k, v in self.extras.items() if isinstance(v, (str, bool, int, float))},
        }


class ReconMethod(ABC):
    """Base class of every reconstruction method.

    Subclasses set ``name`` (registry key, CLI ``--method``), ``title`` (GUI label), ``description`` (one line,
    with the paper), ``parameters``, ``default_iterations`` and optionally ``tune_parameter``/``tune_grid`` (the
    main parameter and the grid ``--tune`` searches), and implement :meth:`iterate`.
    """

    name: ClassVar[str]
    title: ClassVar[str]
    description: ClassVar[str] = ""
    parameters: ClassVar[tuple[Parameter, ...]] = ()
    default_iterations: ClassVar[int] = 100
    tune_parameter: ClassVar[str | None] = None
    tune_grid: ClassVar[Sequence[float]] = ()
    category: ClassVar[str] = "classical"  #: classical | generative | learned | other (GUI grouping)

    def available(self) -> tuple[bool, str]:
        """Whether the method can run here (e.g. its bundled weights exist), and why not."""
        return True, ""

    def parameter(self, name: str) -> Parameter:
        for p in self.parameters:
            if p.name == name:
                return p
        raise ParameterError(f"method {self.name!r} has no parameter {name!r}; "
                             f"it has {[p.name for p in self.parameters]}")

    def resolve_params(self, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """Defaults updated with ``overrides`` (parsed and range-checked)."""
        params = {p.name: p.default for p in self.parameters}
        for key, value in (overrides or {}).items():
            params[key] = self.parameter(key).parse(value)
        return params

    def defaults_for(self, problem: Problem) -> dict[str, Any]:
        """Setting-dependent defaults (e.g. tuned per noise level); by default the declared defaults."""
        return {}

    @abstractmethod
    def iterate(self, problem: Problem, params: dict[str, Any], iterations: int) -> Iterator[Step]:
        """Yield one :class:`Step` per iteration (the last one is the result)."""
