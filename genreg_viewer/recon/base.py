"""The reconstruction framework: parameters, problems, progress states and the method base class.

Every method is a subclass of :class:`ReconMethod` registered in :mod:`genreg_viewer.recon.registry`. A method's
:meth:`ReconMethod.iterate` is a generator of :class:`Step` objects (iteration, current image, objective); the
runner (:mod:`genreg_viewer.recon.runner`) turns them into :class:`ProgressState` objects with PSNR/SSIM and
elapsed time, thins them for display, and cancels between iterations. Methods never compute metrics themselves.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
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
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class ProgressState:
    """A progress report: iteration, current image, objective and (with a ground truth) metrics."""

    iteration: int
    total_iterations: int | None
    image: torch.Tensor
    objective: float | None
    elapsed: float
    psnr: float | None = None
    ssim: float | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    final: bool = False

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
    extras: dict[str, Any] = field(default_factory=dict)
    psnr: float | None = None
    ssim: float | None = None
    cancelled: bool = False

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
