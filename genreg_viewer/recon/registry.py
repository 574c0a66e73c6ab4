"""The one registry of reconstruction methods, read by both the CLI and the GUI."""

from __future__ import annotations

from .base import ReconMethod

_METHODS: dict[str, type[ReconMethod]] = {}


def register(cls: type[ReconMethod]) -> type[ReconMethod]:
    """Class decorator: add a method under ``cls.name``."""
    if cls.name in _METHODS and _METHODS[cls.name] is not cls:
        raise ValueError(f"method name {cls.name!r} registered twice")
    _METHODS[cls.name] = cls
    return cls


def method_names() -> list[str]:
    """Registered method names in registration order."""
    return list(_METHODS)


def get_method(name: str) -> ReconMethod:
    """A fresh instance of the method called ``name``."""
    try:
        return _METHODS[name]()
    except KeyError:
        raise KeyError(f"unknown method {name!r}; available: {', '.join(_METHODS)}") from None


def all_methods() -> list[ReconMethod]:
    return [cls() for cls in _METHODS.values()]
