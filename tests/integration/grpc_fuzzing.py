"""Hypothesis strategies for any protobuf message, built from its descriptor (issue 17, Fuzzing):
odd strings (empty, NUL, path escapes, huge, non-ASCII), extreme and negative numbers, NaN and
infinities, unknown enum values, empty and enormous repeated fields, nested messages and maps, and
Struct/Value parameters. `invalid_utf8` re-encodes a serialized message with a string field's bytes
made invalid UTF-8, which no Python message object can hold but a client in another language can
send."""

from __future__ import annotations

from typing import Any

from google.protobuf import struct_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from tests.conftest import shared_dir

MAX_DEPTH = 3
ENORMOUS = 20_000  # items in an "enormous" repeated field: far past any per-request cap
UTF8_MARKER = "\u2603fuzz-utf8\u2603"  # replaced by invalid UTF-8 of the same length on the wire

# Real things too, so some examples get past validation and reach decoding and inference: a
# photo and a video here, Stash ids the stand-in knows, a job kind.
REAL_STRINGS = [
    str(shared_dir() / "testdata/faces/deepface/img1.jpg"),
    str(shared_dir() / "testdata/video/Megamind.avi"),
    "3",
    "10",
    "tag-library",
]
ODD_STRINGS = st.sampled_from(
    [
        *REAL_STRINGS,
        "",
        " ",
        "\x00",
        "../../../../etc/passwd",
        "/",
        "/dev/zero",
        "/proc/self/mem",
        "C:\\Windows\\win.ini",
        "http://169.254.169.254/latest/meta-data/",
        "file:///etc/passwd",
        "-1",
        "99999999999999999999999",
        "NaN",
        "null",
        "{}",
        "' OR 1=1 --",
        "<script>alert(1)</script>",
        "\u202e\ufeff\U0001f600",
        "a" * 70_000,
        UTF8_MARKER,
    ]
)
STRINGS = ODD_STRINGS | st.text(max_size=30)
BYTES = st.sampled_from([b"", b"\x00" * 16, b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0"]) | st.binary(
    max_size=200
)

_INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}


def _integers(low: int, high: int) -> SearchStrategy[int]:
    edges = [low, high, 0, 1, -1, 2**31 - 1, 2**53] if low < 0 else [low, high, 0, 1, 2**31 - 1, 2**53]
    return st.sampled_from([e for e in edges if low <= e <= high]) | st.integers(low, high)


def _struct_values() -> SearchStrategy[Any]:
    scalars = st.none() | st.booleans() | st.floats(width=64) | STRINGS
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(STRINGS, inner, max_size=4),
        max_leaves=12,
    )


def _struct(value: dict[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(value)
    return struct


def _scalar(field: FieldDescriptor, depth: int) -> SearchStrategy[Any]:
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        return STRINGS
    if kind == FieldDescriptor.TYPE_BYTES:
        return BYTES
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        edges = st.sampled_from([0.0, -1.0, float("nan"), float("inf"), -float("inf"), 1e30])
        return edges | (st.floats(width=32) if kind == FieldDescriptor.TYPE_FLOAT else st.floats())
    if kind == FieldDescriptor.TYPE_ENUM:
        assert field.enum_type is not None
        known = [value.number for value in field.enum_type.values]
        return st.sampled_from(known) | st.integers(-5, 1000)  # proto3 enums are open
    if kind == FieldDescriptor.TYPE_MESSAGE:
        assert field.message_type is not None
        return message_strategy(field.message_type, depth + 1)
    low, high = _INT_RANGES[kind]
    return _integers(low, high)


def _field(field: FieldDescriptor, depth: int) -> SearchStrategy[Any]:
    element = _scalar(field, depth)
    if not field.is_repeated:
        return element
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        key = _scalar(field.message_type.fields_by_name["key"], depth)
        value = _scalar(field.message_type.fields_by_name["value"], depth)
        return st.dictionaries(key, value, max_size=4)
    enormous = element.map(lambda item: [item] * ENORMOUS)
    return st.lists(element, max_size=4) | enormous


def _build(cls: type[Message], values: dict[str, Any]) -> Message:
    message = cls()
    for name, value in values.items():
        target = getattr(message, name)
        field = message.DESCRIPTOR.fields_by_name[name]
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            for key, item in value.items():
                if isinstance(item, Message):
                    target[key].CopyFrom(item)
                else:
                    target[key] = item
        elif field.is_repeated:
            if field.message_type is not None:
                for item in value:
                    target.add().CopyFrom(item)
            else:
                target.extend(value)
        elif isinstance(value, Message):
            target.CopyFrom(value)
        else:
            setattr(message, name, value)
    return message


def message_strategy(descriptor: Descriptor, depth: int = 0) -> SearchStrategy[Message]:
    cls = GetMessageClass(descriptor)
    if descriptor.full_name == "google.protobuf.Struct":
        return st.dictionaries(STRINGS, _struct_values(), max_size=5).map(_struct)
    if depth >= MAX_DEPTH:
        return st.just(cls())
    fields = {field.name: _field(field, depth) for field in descriptor.fields}
    return st.fixed_dictionaries({}, optional=fields).map(lambda values: _build(cls, values))


def invalid_utf8(serialized: bytes) -> bytes:
    """The message's bytes with every UTF8_MARKER's bytes replaced by as many invalid UTF-8 bytes
    (length prefixes stay right, so the frame parses but the string field does not decode)."""
    marker = UTF8_MARKER.encode()
    return serialized.replace(marker, b"\xff\xfe" + b"\xc0" * (len(marker) - 2))
