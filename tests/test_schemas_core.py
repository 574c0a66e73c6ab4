"""The schema layer's reader (genreg_viewer.schemas.core): what is refused before parsing, and one line per failure
naming the file and the field, checked against hand-written expectations of each case."""

from __future__ import annotations

import json
import os
from typing import Annotated

import pytest
from pydantic import Field

from genreg_viewer.schemas import DocumentError, DocumentModel, FiniteFloat, Text, read_document, validate_document
from genreg_viewer.schemas.core import field_path, json_depth


class Layer(DocumentModel):
    channels: Annotated[int, Field(ge=1, le=512)]


class Example(DocumentModel):
    name: Text
    scale: FiniteFloat = 1.0
    layers: list[Layer] = []
    sizes: tuple[int, ...] = ()


class FamilyError(DocumentError):
    pass


def write(tmp_path, text: str):
    path = tmp_path / "example.json"
    path.write_text(text)
    return path


def read(path, **limits):
    return read_document(path, Example, what="example file", max_bytes=limits.get("max_bytes", 10_000),
                         max_depth=limits.get("max_depth", 8), error=FamilyError)


def test_a_valid_document_is_typed(tmp_path):
    doc = read(write(tmp_path, json.dumps({"name": "a", "scale": 2, "layers": [{"channels": 8}], "sizes": [1, 2]})))
    assert doc.name == "a" and doc.scale == 2.0 and doc.layers[0].channels == 8 and doc.sizes == (1, 2)


@pytest.mark.parametrize("document, field, words", [
    ({"name": 3}, "name", "valid string, got 3"),
    ({"name": "a", "scale": "2"}, "scale", "valid number, got '2'"),
    ({"name": "a", "scale": True}, "scale", "valid number, got True"),
    ({"name": "a", "layers": [{"channels": 8}, {"channels": 0}]}, "layers[1].channels", "greater than or equal to 1"),
    ({"name": "a", "layers": [{"channels": 10**400}]}, "layers[0].channels", "an integer of 401 digits"),
    ({"name": "a", "colour": "red"}, "colour", "extra inputs are not permitted"),
    ({"name": "x" * 10_001}, "name", "at most 10000 characters"),
    ({}, "name", "field required"),
])
def test_a_wrong_field_is_one_line_naming_file_and_field(tmp_path, document, field, words):
    path = write(tmp_path, json.dumps(document))
    with pytest.raises(FamilyError) as caught:
        read(path, max_bytes=100_000)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"example file {path}: {field}: ")
    assert words in message and len(message) < 300
    assert caught.value.field == field and caught.value.source == str(path)


@pytest.mark.parametrize("text", ['{"name": "a", "scale": NaN}', '{"name": "a", "scale": Infinity}',
                                  '{"name": "a", "scale": 1e999}'])
def test_non_finite_numbers_are_refused(tmp_path, text):
    with pytest.raises(FamilyError, match="scale: input should be a finite number"):
        read(write(tmp_path, text))


def test_limits_are_checked_before_parsing(tmp_path):
    deep = write(tmp_path, "[" * 9 + "]" * 9)
    with pytest.raises(FamilyError, match="nests 9 levels deep, more than the limit of 8"):
        read(deep)
    brackets_in_text = write(tmp_path, json.dumps({"name": "[[[[[[[[[[{{{{{{{{{"}))
    assert read(brackets_in_text).name.startswith("[[[")
    big = write(tmp_path, json.dumps({"name": "a" * 200}))
    with pytest.raises(FamilyError, match=r"has \d+ bytes, more than the limit of 100"):
        read(big, max_bytes=100)
    with pytest.raises(FamilyError, match="is not valid JSON"):
        read(write(tmp_path, '{"name": '))


def test_fifos_folders_and_missing_files_are_never_opened(tmp_path):
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)  # opening it for reading would block
    with pytest.raises(FamilyError, match="is a FIFO, not a regular file"):
        read(fifo)
    with pytest.raises(FamilyError, match="is a folder"):
        read(tmp_path)
    with pytest.raises(FamilyError, match="does not exist"):
        read(tmp_path / "missing.json")
    dangling = tmp_path / "dangling.json"
    dangling.symlink_to(tmp_path / "nowhere")
    with pytest.raises(FamilyError, match="does not exist"):
        read(dangling)


def test_validated_models_stay_valid_when_changed():
    doc = validate_document(Example, {"name": "a"}, source="memory")
    with pytest.raises(ValueError):
        doc.scale = float("nan")
    with pytest.raises(DocumentError, match="memory: layers"):
        validate_document(Example, {"name": "a", "layers": 3}, source="memory")


def test_json_depth_and_field_paths_against_hand_counts():
    assert json_depth(b'{"a": [1, {"b": []}], "c": "]]]]"}') == 4  # object, list, object, list
    assert json_depth(b'"{{{{"') == 0 and json_depth(b'"\\"[[["') == 0
    assert field_path(("config", "widths", 2)) == "config.widths[2]"
    assert field_path((0, "name")) == "[0].name"
