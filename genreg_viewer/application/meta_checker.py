"""Type and range checks of a bundle's JSON metadata (:class:`MetaChecker`) and the bounds they share.

Every failure is one :class:`~genreg_viewer.application.bundles.SessionError` naming the field, so a bad file is
refused with one line. Used by :mod:`.session_schema` (images, runs) and :mod:`.panel_settings` (the GUI panels'
stored settings)."""

from __future__ import annotations

import math
from typing import Any, Literal, overload

from .bundles import SessionError

#: most characters of a text field (titles, mask specs, method names, ...)
MAX_TEXT = 10_000
#: how deep parameters, infos and histories may nest
MAX_JSON_DEPTH = 4
#: largest integer a session stores (run ids, slice indices, widget values): they are bounded so that a Qt spin
#: box, which holds a 32-bit integer, can show them
MAX_STORED_INT = 2**31 - 1


class MetaChecker:
    """Type and range checks of the metadata; each failure is a :class:`SessionError` naming the field."""

    @staticmethod
    def shown(value: Any) -> str:
        text = repr(value)
        return text if len(text) <= 60 else text[:57] + "..."

    def fail(self, where: str, expected: str, value: Any):
        raise SessionError(f"{where} must be {expected}, got {self.shown(value)}")

    def mapping(self, value: Any, where: str, default=None) -> dict:
        if value is None and default is not None:
            return default
        if not isinstance(value, dict):
            self.fail(where, "an object (dict)", value)
        return value

    @overload
    def text(self, value: Any, where: str, optional: Literal[False] = False) -> str: ...
    @overload
    def text(self, value: Any, where: str, optional: bool) -> str | None: ...

    def text(self, value: Any, where: str, optional: bool = False) -> str | None:
        if value is None and optional:
            return None
        if not isinstance(value, str):
            self.fail(where, "a string" + (" or null" if optional else ""), value)
        if len(value) > MAX_TEXT:
            raise SessionError(f"{where} is longer than {MAX_TEXT} characters")
        return value

    @overload
    def integer(self, value: Any, where: str, low: int, high: int, optional: Literal[False] = False) -> int: ...
    @overload
    def integer(self, value: Any, where: str, low: int, high: int, optional: bool) -> int | None: ...

    def integer(self, value: Any, where: str, low: int, high: int, optional: bool = False) -> int | None:
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(where, "an integer" + (" or null" if optional else ""), value)
        if not low <= value <= high:
            raise SessionError(f"{where} must be between {low} and {high}, got {self.shown(value)}")
        return value

    @overload
    def number(self, value: Any, where: str, low: float = ..., high: float = ...,
               optional: Literal[False] = False, finite: bool = ...) -> float: ...
    @overload
    def number(self, value: Any, where: str, low: float = ..., high: float = ...,
               *, optional: bool, finite: bool = ...) -> float | None: ...

    def number(self, value: Any, where: str, low: float = -math.inf, high: float = math.inf,
               optional: bool = False, finite: bool = True) -> float | None:
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(where, "a number" + (" or null" if optional else ""), value)
        try:
            value = float(value)
        except OverflowError:  # an integer of 1e309 or more
            self.fail(where, "a number within the range of a double", value)
        if finite and not math.isfinite(value):
            self.fail(where, "a finite number", value)
        if not low <= value <= high and not math.isnan(value):
            bound = f">= {low:g}" if high == math.inf else f"between {low:g} and {high:g}"
            raise SessionError(f"{where} must be {bound}, got {value:g}")
        return value

    def boolean(self, value: Any, where: str) -> bool:
        if not isinstance(value, bool):
            self.fail(where, "true or false", value)
        return value

    def plain(self, value: Any, where: str, depth: int = MAX_JSON_DEPTH) -> Any:
        """A JSON value (scalars, lists, objects with string keys) nested at most ``depth`` deep."""
        if value is None or isinstance(value, (bool, int, float)):
            return value
        if isinstance(value, str):
            return self.text(value, where)
        if depth <= 0:
            raise SessionError(f"{where} nests too deeply")
        if isinstance(value, list):
            return [self.plain(v, f"{where}[{i}]", depth - 1) for i, v in enumerate(value)]
        if isinstance(value, dict):
            return {self.text(k, f"a key of {where}"): self.plain(v, f"{where}.{k}", depth - 1)
                    for k, v in value.items()}
        self.fail(where, "a JSON value", value)

    @staticmethod
    def other_scalars(value: dict, known: tuple[str, ...]) -> dict:
        """The entries of ``value`` not in ``known`` whose values are short scalars (settings written by a newer
        version pass through when harmless; anything else is dropped)."""
        return {k: v for k, v in value.items() if isinstance(k, str) and k not in known
                and (v is None or isinstance(v, (bool, int, float)) or (isinstance(v, str) and len(v) <= MAX_TEXT))}

    def scalars(self, value: Any, where: str) -> dict:
        """An object whose values are scalars (string, number, boolean or null)."""
        value = self.mapping(value, where, default={})
        for key, item in value.items():
            if item is not None and not isinstance(item, (str, bool, int, float)):
                self.fail(f"{where}.{key}", "a string, number, boolean or null", item)
            if isinstance(item, str):
                self.text(item, f"{where}.{key}")
        return dict(value)
