"""Pieces shared by the latent-variable image generators (the VAE of :mod:`.vae`, the flow of :mod:`.flow`).

Both map latents ``z (B, d)`` to images ``(B, 1, S, S)``, keep their architecture in a dataclass config stored in
the weights JSON (``{"model": MODEL_TYPE, **config.to_dict()}``) and are loaded frozen, in eval mode.
"""

from __future__ import annotations

import os
from dataclasses import asdict, fields
from typing import Any, Callable, Mapping, TypeVar, cast

import torch

from .weights import WeightsError, check_before_building, load_state_into, load_weights, weights_paths

GeneratorT = TypeVar("GeneratorT", bound="ImageGenerator")


def is_integer(value: Any) -> bool:
    """A Python ``int`` that is not a ``bool`` (JSON configs)."""
    return isinstance(value, int) and not isinstance(value, bool)


class JsonConfig:
    """Mixin for the dataclass configs: ``to_dict`` / ``from_dict`` with the JSON lists of the tuple fields.

    A subclass sets ``label`` (the model's name in messages, e.g. ``"VAE"``) and ``tuple_fields`` (the fields held as
    tuples and stored as lists); ``from_dict`` refuses unknown keys and non-list values of tuple fields with
    ``ValueError``, and the dataclass's own validation does the rest.
    """

    label = "model"
    tuple_fields: tuple[str, ...] = ()  # names of tuple-valued fields

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)  # type: ignore[call-overload]  # subclasses are dataclasses
        for name in self.tuple_fields:
            data[name] = list(getattr(self, name))
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]):
        """Build from a dict (e.g. the weights JSON); unknown keys or bad values raise ``ValueError``."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a {cls.label} config must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]  # subclasses are dataclasses
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown {cls.label} config keys {unknown}; known keys are {sorted(known)}")
        values = dict(data)
        for name in cls.tuple_fields:
            if name in values:
                if not isinstance(values[name], (list, tuple)):
                    raise ValueError(f"{name} must be a list of integers, got {values[name]!r}")
                values[name] = tuple(values[name])
        return cls(**values)


#: most entries of a list-valued size (levels of a network)
MAX_LEVELS = 8


def check_sizes(config: Any, label: str, scalars: Mapping[str, int], lists: Mapping[str, int] = {}) -> None:
    """``ValueError`` naming the field unless each integer field in ``scalars`` is at most its bound and each list
    field in ``lists`` has at most :data:`MAX_LEVELS` entries of at most its bound (type and lower-bound checks are
    the config's own); checked before the sizes are used to build anything."""
    for name, most in scalars.items():
        value = getattr(config, name)
        if is_integer(value) and value > most:
            raise ValueError(f"{label} {name} must be at most {most}, got {value!r}")
    for name, most in lists.items():
        values = tuple(getattr(config, name))
        if len(values) > MAX_LEVELS:
            raise ValueError(f"{label} {name} must have at most {MAX_LEVELS} entries, got {len(values)}")
        if any(is_integer(v) and v > most for v in values):
            raise ValueError(f"{label} {name} must be at most {most} each, got {list(values)!r}")


def _shape_of(value: Any) -> Any:
    return tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__


class ImageGenerator:
    """Mixin of the generator modules (``class G(ImageGenerator, nn.Module)``, built from a validated ``config``):
    images ``(B, 1, S, S)`` with ``S = config.image_size``, latents ``(B, d)`` with ``d = latent_dimension``. A subclass
    sets ``generator_name`` (e.g. ``"the VAE"``, used in error messages) and defines ``latent_dimension``."""

    generator_name = "the generator"

    def __init__(self, config: Any) -> None:
        """Initialise the module (the next class in the MRO, ``nn.Module``) and keep the validated ``config``."""
        super().__init__()
        config.validate()
        self.config = config

    @property
    def latent_dimension(self) -> int:
        raise NotImplementedError

    def _check_images(self, x: Any) -> None:
        """``ValueError`` ("... expects images of shape (B, 1, S, S) ...") unless ``x`` is such a tensor."""
        size = self.config.image_size
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != 1 or tuple(x.shape[-2:]) != (size, size):
            raise ValueError(
                f"{self.generator_name} expects images of shape (B, 1, {size}, {size}), got {_shape_of(x)}")

    def _check_latent(self, z: Any) -> None:
        """``ValueError`` ("... expects latents of shape (B, d) ...") unless ``z`` is such a tensor."""
        dimension = self.latent_dimension
        if not isinstance(z, torch.Tensor) or z.ndim != 2 or z.shape[1] != dimension:
            raise ValueError(f"{self.generator_name} expects latents of shape (B, {dimension}), got {_shape_of(z)}")

    def freeze(self):
        """Eval mode and ``requires_grad = False`` on every parameter (for use as a fixed prior); returns ``self``."""
        self.eval()
        for parameter in self.parameters():
            parameter.requires_grad_(False)
        return self


def generator_from_weights(
    stem: str | os.PathLike,
    model_type: str,
    config_class: type[JsonConfig],
    build: Callable[[Any], GeneratorT],
    device: str | torch.device = "cpu",
) -> tuple[GeneratorT, dict]:
    """Rebuild a generator from ``stem.{safetensors,json}``: the JSON's ``config.model`` must be ``model_type``, the
    rest a valid ``config_class``; ``build(config)`` creates the module, whose tensors must match the file exactly
    (strict). Returns the module (on ``device``, eval mode, frozen) and the file's info."""
    state, config_dict, info = load_weights(stem, device="cpu")
    tensor_path, meta_path = weights_paths(stem)
    config_dict = dict(config_dict)
    label = config_class.label
    if config_dict.pop("model", None) != model_type:
        raise WeightsError(f"{meta_path} does not describe a genreg {label} (config.model != {model_type!r})")
    try:
        config = config_class.from_dict(config_dict)
    except (TypeError, ValueError) as exc:
        raise WeightsError(f"{meta_path} has an invalid {label} config: {exc}") from exc
    check_before_building(lambda c: cast(torch.nn.Module, build(c)), config, state, str(tensor_path), meta_path)
    model = build(config)
    module = cast(torch.nn.Module, model)  # generators are ImageGenerator and nn.Module
    load_state_into(module, state, str(tensor_path), config=meta_path)
    module.to(device)
    return model.freeze(), info
