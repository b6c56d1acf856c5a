"""The little of protobuf the simulator speaks with kubectl.

Read: the bodies kubectl's typed clients send for the access reviews (``kubectl auth can-i`` posts a
SelfSubjectAccessReview as ``application/vnd.kubernetes.protobuf``, never as JSON). Any other protobuf body is refused
with 415, as a server that does not read it must.

Written: the OpenAPI v2 document, which kubectl up to 1.28 asks for in protobuf only (gnostic's openapi_v2.Document,
field numbers from gnostic's OpenAPIv2.proto) before `apply` and `explain`.

A body is the magic ``k8s\\0`` and a runtime.Unknown {typeMeta {apiVersion, kind}, raw}; ``raw`` is the object's
message. Field numbers are those of k8s.io/api/authorization/v1/generated.proto.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

MEDIA_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"

Obj = dict[str, Any]


@dataclass(frozen=True)
class Message:
    """A message's fields that matter here: field number -> (JSON name, the nested message or None for a string).
    Fields not listed (metadata, the 1.31+ selectors) are skipped."""

    fields: dict[int, tuple[str, Message | None]]


UNKNOWN = Message({1: ("typeMeta", Message({1: ("apiVersion", None), 2: ("kind", None)})), 2: ("raw", None)})
RESOURCE_ATTRIBUTES = Message(
    {
        1: ("namespace", None),
        2: ("verb", None),
        3: ("group", None),
        4: ("version", None),
        5: ("resource", None),
        6: ("subresource", None),
        7: ("name", None),
    }
)
NON_RESOURCE_ATTRIBUTES = Message({1: ("path", None), 2: ("verb", None)})
MESSAGES = {
    "SelfSubjectAccessReview": Message(
        {
            2: (
                "spec",
                Message(
                    {
                        1: ("resourceAttributes", RESOURCE_ATTRIBUTES),
                        2: ("nonResourceAttributes", NON_RESOURCE_ATTRIBUTES),
                    }
                ),
            )
        }
    ),
    "SelfSubjectRulesReview": Message({2: ("spec", Message({1: ("namespace", None)}))}),
}


class Unreadable(Exception):
    """Not a protobuf body the simulator reads."""


def decode(body: bytes, kind: str) -> Obj:
    """The JSON form of a protobuf-encoded ``kind``; Unreadable if it is another kind or not a Kubernetes body."""
    if not body.startswith(MAGIC) or kind not in MESSAGES:
        raise Unreadable(kind)
    envelope = _message(body[len(MAGIC) :], UNKNOWN, raw=True)
    type_meta = envelope.get("typeMeta") or {}
    if type_meta.get("kind") != kind:
        raise Unreadable(kind)
    decoded = _message(envelope.get("raw", b""), MESSAGES[kind])
    return {"apiVersion": type_meta.get("apiVersion", ""), "kind": kind, "metadata": {}, **decoded}


def _message(data: bytes, message: Message, *, raw: bool = False) -> Obj:
    found: Obj = {}
    position = 0
    while position < len(data):
        key, position = _varint(data, position)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            _, position = _varint(data, position)
            continue
        if wire_type == 5:
            position += 4
            continue
        if wire_type == 1:
            position += 8
            continue
        if wire_type != 2:
            raise Unreadable(f"wire type {wire_type}")
        length, position = _varint(data, position)
        value, position = data[position : position + length], position + length
        if len(value) != length:
            raise Unreadable("truncated")
        if number not in message.fields:
            continue
        name, nested = message.fields[number]
        if nested is not None:
            found[name] = _message(value, nested, raw=raw)
        elif raw and name == "raw":
            found[name] = value
        elif value:  # an empty string is an unset field: JSON leaves it out
            found[name] = value.decode()
    return found


def _varint(data: bytes, position: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if position >= len(data):
            raise Unreadable("truncated")
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7


# --- writing: the OpenAPI v2 document as gnostic's openapi_v2.Document (kubectl up to 1.28 reads it only so) -----

# What kubectl asks for, and what the API server answers with (its name with "@" is not a valid media type).
OPENAPI_V2_ASKED = (
    "application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
    "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
)
OPENAPI_V2 = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"


def _tag(number: int, wire_type: int) -> bytes:
    return _encode_varint(number << 3 | wire_type)


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _bytes(number: int, data: bytes) -> bytes:
    return _tag(number, 2) + _encode_varint(len(data)) + data


def _string(number: int, text: str) -> bytes:
    return _bytes(number, text.encode()) if text else b""


def _bool(number: int, value: bool) -> bytes:
    return _tag(number, 0) + b"\x01" if value else b""


def _any(value: Any) -> bytes:
    """gnostic's Any: the value as YAML (JSON is YAML), which is how kubectl reads vendor extensions."""
    return _string(2, json.dumps(value))


def _extensions(number: int, obj: Obj) -> bytes:
    return b"".join(
        _bytes(number, _string(1, key) + _bytes(2, _any(value))) for key, value in obj.items() if key.startswith("x-")
    )


def _schema(schema: Obj) -> bytes:
    """openapi_v2.Schema: the fields the generated documents use."""
    out = _string(1, schema.get("$ref", "")) + _string(2, schema.get("format", ""))
    out += _string(4, schema.get("description", ""))
    out += b"".join(_string(19, name) for name in schema.get("required", []))
    if isinstance(schema.get("additionalProperties"), dict):
        out += _bytes(21, _bytes(1, _schema(schema["additionalProperties"])))
    if "type" in schema:
        out += _bytes(22, _string(1, schema["type"]))
    if "items" in schema:
        out += _bytes(23, _bytes(1, _schema(schema["items"])))
    out += b"".join(_bytes(24, _schema(part)) for part in schema.get("allOf", []))
    if "properties" in schema:
        named = (_string(1, name) + _bytes(2, _schema(value)) for name, value in schema["properties"].items())
        out += _bytes(25, b"".join(_bytes(1, entry) for entry in named))
    return out + _extensions(31, schema)


def _parameter(parameter: Obj) -> bytes:
    if parameter["in"] == "body":
        body = _string(2, parameter["name"]) + _string(3, "body") + _bool(4, parameter.get("required", False))
        return _bytes(1, body + _bytes(5, _schema(parameter["schema"])))
    query = _bool(1, parameter.get("required", False)) + _string(2, parameter["in"]) + _string(4, parameter["name"])
    return _bytes(2, _bytes(3, query + _string(6, parameter.get("type", ""))))


def _operation(operation: Obj) -> bytes:
    out = b"".join(_string(7, media_type) for media_type in operation.get("consumes", []))
    out += b"".join(_bytes(8, _bytes(1, _parameter(parameter))) for parameter in operation.get("parameters", []))
    responses = b""
    for code, answer in operation.get("responses", {}).items():
        response = _string(1, answer.get("description", "")) + _bytes(2, _bytes(1, _schema(answer["schema"])))
        responses += _bytes(1, _string(1, code) + _bytes(2, _bytes(1, response)))
    return out + _bytes(9, responses) + _extensions(13, operation)


PATH_ITEM_FIELDS = {"get": 2, "put": 3, "post": 4, "delete": 5, "patch": 8}


def openapi_v2(document: Obj) -> bytes:
    """The Swagger 2.0 document (JSON form) encoded as openapi_v2.Document."""
    paths = b""
    for path, item in document["paths"].items():
        encoded = b"".join(_bytes(PATH_ITEM_FIELDS[method], _operation(op)) for method, op in item.items())
        paths += _bytes(2, _string(1, path) + _bytes(2, encoded))
    definitions = b"".join(
        _bytes(1, _string(1, name) + _bytes(2, _schema(schema))) for name, schema in document["definitions"].items()
    )
    info = _string(1, document["info"]["title"]) + _string(2, document["info"]["version"])
    return _string(1, document["swagger"]) + _bytes(2, info) + _bytes(8, paths) + _bytes(9, definitions)
