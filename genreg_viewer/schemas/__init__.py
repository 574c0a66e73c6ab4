"""Declared schemas of every structured file the program reads, and the one error type they raise.

:mod:`.core` holds the reader and the error (:class:`DocumentError`); each family of files declares its layout as
typed pydantic models beside it. A schema states the types, ranges, lengths and nesting a file may have; reading a
file checks that it is a regular file within its size limit before a byte is parsed, and every failure is one
line naming the file and the field."""

from .core import (
    MAX_JSON_DEPTH,
    DocumentError,
    DocumentModel,
    FiniteFloat,
    StrictCount,
    Text,
    describe_validation_error,
    read_document,
    read_json_bytes,
    validate_document,
)

__all__ = [
    "MAX_JSON_DEPTH",
    "DocumentError",
    "DocumentModel",
    "FiniteFloat",
    "StrictCount",
    "Text",
    "describe_validation_error",
    "read_document",
    "read_json_bytes",
    "validate_document",
]
