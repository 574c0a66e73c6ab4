"""The schema layer's reader and error: regular file, size limit, JSON nesting limit, then a typed pydantic model.

Every structured file (weight configs and ``weightset.json``, tuned and calibration tables, session metadata,
slice-set layouts, checkpoint metadata) is declared as a :class:`DocumentModel` subclass. :func:`read_document`
checks what can be checked before parsing (the path is a regular file, not a FIFO or device that would block; its
size is within the family's limit), parses with pydantic's JSON parser in strict mode (no coercion of text to
numbers, no NaN or infinity, no unknown keys unless the model allows them) and turns the first failure into one
:class:`DocumentError` line ``<file>: <field>: <what is wrong>, got <value>``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StringConstraints, ValidationError

from ..fileio import NotRegularFileError, check_regular_file

#: most levels of nested objects and lists in any document (the deepest declared layout uses fewer than 8)
MAX_JSON_DEPTH = 32
#: most characters of a free-text field (titles, descriptions, terms, method names)
MAX_TEXT = 10_000

#: text of at most :data:`MAX_TEXT` characters
Text = Annotated[str, StringConstraints(max_length=MAX_TEXT)]
#: a finite number (an integer is accepted; a boolean, NaN or infinity is not)
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
#: a non-negative integer that fits a 32-bit spin box (counts, indices, steps)
StrictCount = Annotated[StrictInt, Field(ge=0, le=2**31 - 1)]

ModelT = TypeVar("ModelT", bound=BaseModel)
ErrorT = TypeVar("ErrorT", bound="DocumentError")


class DocumentError(ValueError):
    """A structured file that cannot be used: one line naming the file (``source``) and, where one is at fault, the
    field (``field``, dotted with ``[i]`` for list items). The families' own errors (``WeightsError``,
    ``SessionError``, ...) derive from it, so one ``except DocumentError`` catches every refused file."""

    def __init__(self, message: str, *, source: str | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.source = source
        self.field = field


class DocumentModel(BaseModel):
    """Base of the declared file layouts: strict types (``"3"`` is not 3, ``true`` is not 1), finite numbers,
    unknown keys refused (a subclass that keeps extra keys sets ``extra="allow"``) and validation on assignment, so
    a model changed in memory stays valid."""

    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False, validate_assignment=True,
                              str_max_length=MAX_TEXT)


def _shown(value: Any, most: int = 60) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**15:
        return f"an integer of {len(str(abs(value)))} digits"
    text = repr(value)
    return text if len(text) <= most else text[: most - 3] + "..."


def field_path(location: tuple[Any, ...]) -> str:
    """``("config", "widths", 2)`` -> ``config.widths[2]`` (pydantic's location of a failure, as a user reads it)."""
    text = ""
    for part in location:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
    return text


def describe_validation_error(error: ValidationError) -> tuple[str, str]:
    """``(field, problem)`` of the first failure of ``error`` in words (the field is empty for a whole-document
    failure); further failures are counted, not listed."""
    problems = error.errors(include_url=False)
    first = problems[0]
    message = str(first.get("msg", "invalid"))
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            message = message[len(prefix):]
    kind = first.get("type", "")
    if kind not in ("value_error", "assertion_error", "missing", "json_invalid") and "input" in first:
        message += f", got {_shown(first['input'])}"
    if len(problems) > 1:
        message += f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})"
    field = field_path(tuple(first.get("loc", ())))
    return field, message[:1].lower() + message[1:]


def validate_document(model: type[ModelT], data: Any, *, source: str | os.PathLike, what: str = "",
                      error: type[DocumentError] = DocumentError) -> ModelT:
    """``model`` validated from already parsed ``data`` (a dict from JSON or HDF5 attributes); a failure is one
    ``error`` line ``<what> <source>: <field>: <problem>``."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _document_error(exc, what, os.fspath(source), error) from None


def _document_error(exc: ValidationError, what: str, source: str, error: type[DocumentError]) -> DocumentError:
    field, problem = describe_validation_error(exc)
    named = f"{what} {source}" if what else source
    if not field and exc.errors(include_url=False)[0].get("type") == "json_invalid":
        return error(f"{named} is not valid JSON: {problem}", source=source)
    where = f"{named}: {field}" if field else named
    return error(f"{where}: {problem}", source=source, field=field or None)


_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_BRACKETS = re.compile(rb"[\[\]{}]")


def json_depth(text: bytes) -> int:
    """Deepest nesting of objects and lists in JSON ``text``, counted without parsing (strings skipped), so a
    document nested too deeply is refused before a parser recurses into it."""
    depth = deepest = 0
    for match in _BRACKETS.finditer(_STRING.sub(b'""', text)):
        if match.group() in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def read_json_bytes(path: str | os.PathLike, *, what: str, max_bytes: int, max_depth: int = MAX_JSON_DEPTH,
                    error: type[DocumentError] = DocumentError) -> bytes:
    """The bytes of the JSON file ``path`` once it is known to be a regular file of at most ``max_bytes`` bytes
    whose nesting is at most ``max_depth`` levels; anything else is one ``error`` line naming ``what`` and the file
    (a FIFO or device is never opened, so nothing blocks)."""
    source = os.fspath(path)
    try:
        target: Path = check_regular_file(path, what)
        size = target.stat().st_size
    except (FileNotFoundError, NotRegularFileError) as exc:
        raise error(str(exc), source=source) from None
    except OSError as exc:
        raise error(f"{what} {source} cannot be read ({exc.strerror or exc})", source=source) from None
    if size > max_bytes:
        raise error(f"{what} {source} has {size} bytes, more than the limit of {max_bytes}", source=source)
    try:
        with open(target, "rb") as handle:
            text = handle.read(max_bytes + 1)
    except OSError as exc:
        raise error(f"{what} {source} cannot be read ({exc.strerror or exc})", source=source) from None
    if len(text) > max_bytes:  # grew since the size was read
        raise error(f"{what} {source} has more than the limit of {max_bytes} bytes", source=source)
    depth = json_depth(text)
    if depth > max_depth:
        raise error(f"{what} {source} nests {depth} levels deep, more than the limit of {max_depth}", source=source)
    return text


def read_document(path: str | os.PathLike, model: type[ModelT], *, what: str, max_bytes: int,
                  max_depth: int = MAX_JSON_DEPTH, error: type[DocumentError] = DocumentError) -> ModelT:
    """The JSON file ``path`` as a validated ``model`` (see the module docstring); every failure, from a missing
    file to a wrong field, is one ``error`` line naming the file."""
    text = read_json_bytes(path, what=what, max_bytes=max_bytes, max_depth=max_depth, error=error)
    try:
        return model.model_validate_json(text)
    except ValidationError as exc:
        raise _document_error(exc, what, os.fspath(path), error) from None
