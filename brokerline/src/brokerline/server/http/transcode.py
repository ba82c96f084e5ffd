"""HTTP request -> protobuf request message, and protobuf response -> JSON (proto3 JSON mapping).

The request message is filled from, in order: the body (the whole message for `body: "*"`,
one field for `body: "field"`), the query parameters (every field not bound by the path or
the body; `a.b=1` for a nested field, a repeated field by repeating the parameter), then the
path variables. `json_format` parses all of it with unknown fields refused, so a misspelt
field is a 400 naming it, never a silently empty value.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from brokerline.server.http.rules import Route, repeated, resolve_field


class BadRequest(ValueError):
    """The request cannot be made into the method's request message (answers 400)."""


def request_message(
    route: Route, message_class: type[Message], variables: dict[str, str], query: bytes,
    body: bytes,
) -> Message:
    data: dict[str, Any] = {}
    if route.body and body.strip():
        try:
            decoded = json.loads(body)
        except UnicodeDecodeError:
            raise BadRequest("the body is not UTF-8; send JSON in UTF-8") from None
        except json.JSONDecodeError as exc:
            raise BadRequest(f"the body is not valid JSON ({exc.msg} at line {exc.lineno} "
                             f"column {exc.colno})") from None
        except RecursionError:
            raise BadRequest("the body's JSON is nested too deeply") from None
        if route.body == "*":
            if not isinstance(decoded, dict):
                raise BadRequest("the body must be a JSON object (the request message)")
            data = decoded
        else:
            data = {route.body: decoded}
    descriptor = message_class.DESCRIPTOR
    for name, value in _query_parameters(query):
        if route.body == "*":
            raise BadRequest(f"query parameter {name!r}: this method takes every field in the "
                             "body")
        _set(data, descriptor, name, value, query=True)
    for path, value in variables.items():
        _set(data, descriptor, path, value, query=False)
    message = message_class()
    try:
        json_format.ParseDict(data, message, ignore_unknown_fields=False)
    except json_format.ParseError as exc:
        raise BadRequest(_without_type_prefix(str(exc))) from None
    except RecursionError:  # a recursive message type, nested deeper than Python recurses
        raise BadRequest("the request is nested too deeply") from None
    return message


def _query_parameters(query: bytes) -> list[tuple[str, str]]:
    try:
        return parse_qsl(query.decode("ascii"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise BadRequest("the query string is not ASCII; percent-encode it") from None


def _set(data: dict[str, Any], descriptor: Descriptor, path: str, text: str, query: bool) -> None:
    leaf = resolve_field(descriptor, path)
    if leaf is None:
        what = "query parameter" if query else "path variable"
        raise BadRequest(f"{what} {path!r} is not a field of {descriptor.full_name}")
    if leaf.type == FieldDescriptor.TYPE_MESSAGE and not _scalar_wrapper(leaf):
        raise BadRequest(f"query parameter {path!r} is a message; set its fields ({path}.x=...)")
    value = _scalar(leaf, text, path)
    node = data
    *parents, name = path.split(".")
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise BadRequest(f"{path!r} conflicts with the body's {part!r}")
        node = child
    if repeated(leaf):
        existing = node.setdefault(name, [])
        if not isinstance(existing, list):
            raise BadRequest(f"{path!r} conflicts with the body's {name!r}")
        existing.append(value)
    else:
        node[name] = value  # a path variable wins over the body


def _scalar_wrapper(leaf: FieldDescriptor) -> bool:
    # google.protobuf.Int32Value and friends, Timestamp, Duration, FieldMask: JSON strings
    full = leaf.message_type.full_name if leaf.message_type else ""
    return full.startswith("google.protobuf.") and full.split(".")[-1] in {
        "DoubleValue", "FloatValue", "Int64Value", "UInt64Value", "Int32Value", "UInt32Value",
        "BoolValue", "StringValue", "BytesValue", "Timestamp", "Duration", "FieldMask",
    }


def _scalar(leaf: FieldDescriptor, text: str, path: str) -> Any:
    """The query or path text as the JSON value json_format expects for the field."""
    if leaf.type == FieldDescriptor.TYPE_BOOL or (
        leaf.message_type is not None and leaf.message_type.full_name == "google.protobuf.BoolValue"
    ):
        if text not in ("true", "false"):
            raise BadRequest(f"{path!r} must be true or false")
        return text == "true"
    return text  # numbers as strings, enums by name, bytes as base64: proto3 JSON takes these


def _without_type_prefix(message: str) -> str:
    # json_format says e.g. 'Message type "report.v1.X" has no field named "foo" at "X".'
    return message.rstrip(".") + "; check the field names and types against the API"


def response_json(message: Message, response_body: str) -> bytes:
    """The response as proto3 JSON: lowerCamelCase names, fields at their default included."""
    printed = json_format.MessageToDict(message, always_print_fields_with_no_presence=True)
    # in the proto's field order (MessageToDict puts the fields left at their default last)
    data: Any = printed
    if not message.DESCRIPTOR.full_name.startswith("google.protobuf."):  # Struct: its own keys
        data = {f.json_name: printed[f.json_name] for f in message.DESCRIPTOR.fields
                if f.json_name in printed}
    if response_body:
        leaf = message.DESCRIPTOR.fields_by_name[response_body]
        data = data.get(leaf.json_name)
    return json.dumps(data, separators=(",", ":")).encode()
