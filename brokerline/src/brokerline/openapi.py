"""An OpenAPI 3.0 document of the HTTP/JSON transport, from the same proto rules it serves.

Each `google.api.http` route becomes an operation: path variables as path parameters, the
body (`*` or one field) as a JSON request body, the other fields of a body-less method as
query parameters, the response message as the 200 answer and google.rpc.Status as every
error. Schemas follow the proto3 JSON mapping the transport speaks: lowerCamelCase names,
64-bit integers as strings, bytes as base64, enums by name, well-known types in their JSON
form.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor, ServiceDescriptor

from brokerline.server.http.rules import Route, repeated, routes_for
from brokerline.server.http.status import HTTP_STATUS

OPENAPI_VERSION = "3.0.3"
SCHEMAS = "#/components/schemas/"
STATUS = "google.rpc.Status"

_F = FieldDescriptor
_SCALARS: dict[int, dict[str, Any]] = {
    _F.TYPE_DOUBLE: {"type": "number", "format": "double"},
    _F.TYPE_FLOAT: {"type": "number", "format": "float"},
    _F.TYPE_INT64: {"type": "string", "format": "int64"},
    _F.TYPE_SINT64: {"type": "string", "format": "int64"},
    _F.TYPE_SFIXED64: {"type": "string", "format": "int64"},
    _F.TYPE_UINT64: {"type": "string", "format": "uint64"},
    _F.TYPE_FIXED64: {"type": "string", "format": "uint64"},
    _F.TYPE_INT32: {"type": "integer", "format": "int32"},
    _F.TYPE_SINT32: {"type": "integer", "format": "int32"},
    _F.TYPE_SFIXED32: {"type": "integer", "format": "int32"},
    _F.TYPE_UINT32: {"type": "integer", "format": "int64", "minimum": 0},
    _F.TYPE_FIXED32: {"type": "integer", "format": "int64", "minimum": 0},
    _F.TYPE_BOOL: {"type": "boolean"},
    _F.TYPE_STRING: {"type": "string"},
    _F.TYPE_BYTES: {"type": "string", "format": "byte"},
}
_WRAPPERS = {"DoubleValue": _F.TYPE_DOUBLE, "FloatValue": _F.TYPE_FLOAT,
             "Int64Value": _F.TYPE_INT64, "UInt64Value": _F.TYPE_UINT64,
             "Int32Value": _F.TYPE_INT32, "UInt32Value": _F.TYPE_UINT32,
             "BoolValue": _F.TYPE_BOOL, "StringValue": _F.TYPE_STRING,
             "BytesValue": _F.TYPE_BYTES}
_WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "pattern": r"^-?\d+(\.\d+)?s$"},
    "google.protobuf.FieldMask": {"type": "string"},
    "google.protobuf.Struct": {"type": "object", "additionalProperties": True},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array", "items": {}},
    "google.protobuf.Any": {"type": "object", "properties": {"@type": {"type": "string"}},
                            "additionalProperties": True},
    "google.protobuf.Empty": {"type": "object"},
    **{f"google.protobuf.{name}": dict(_SCALARS[kind]) for name, kind in _WRAPPERS.items()},
}
_STATUS_SCHEMA = {
    "type": "object",
    "description": "google.rpc.Status: the gRPC status code (a number), its message, details",
    "properties": {
        "code": {"type": "integer", "format": "int32"},
        "message": {"type": "string"},
        "details": {"type": "array", "items": {"type": "object", "additionalProperties": True}},
    },
}


class Schemas:
    """The components/schemas section, one entry per message type (recursion-safe)."""

    def __init__(self) -> None:
        self.schemas: dict[str, Any] = {STATUS: _STATUS_SCHEMA}

    def ref(self, descriptor: Descriptor) -> dict[str, Any]:
        if descriptor.full_name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[descriptor.full_name])
        name = descriptor.full_name
        if name not in self.schemas:
            self.schemas[name] = {}  # placeholder first: a recursive message refers to it
            self.schemas[name] = {
                "type": "object",
                "description": f"protobuf message {name}",
                "properties": {f.json_name: self.field(f) for f in descriptor.fields},
            }
        return {"$ref": SCHEMAS + name}

    def field(self, field: FieldDescriptor) -> dict[str, Any]:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            return {"type": "object",
                    "additionalProperties": self.single(field.message_type.fields_by_name["value"])}
        single = self.single(field)
        return {"type": "array", "items": single} if repeated(field) else single

    def single(self, field: FieldDescriptor) -> dict[str, Any]:
        if field.type == _F.TYPE_MESSAGE:
            return self.ref(field.message_type)
        if field.type == _F.TYPE_ENUM:
            return {"type": "string", "enum": [v.name for v in field.enum_type.values]}
        return dict(_SCALARS.get(field.type, {}))


def _openapi_path(template: str, variables: dict[str, str]) -> str:
    """`/v1/{name=shelves/*}/books` -> `/v1/{name}/books` (OpenAPI has no sub-patterns)."""
    return re.sub(r"\{([^}=]+)(=[^}]*)?\}", lambda m: "{" + m.group(1) + "}", template)


def _query_parameters(
    message: Descriptor, schemas: Schemas, bound: set[str], prefix: str = "", depth: int = 0
) -> list[dict[str, Any]]:
    """The fields a body-less method takes as query parameters (nested ones as `a.b`)."""
    parameters: list[dict[str, Any]] = []
    for field in message.fields:
        path = f"{prefix}{field.name}"
        if path in bound:
            continue
        kind = field.message_type.full_name if field.message_type else ""
        if field.type == _F.TYPE_MESSAGE and kind not in _WELL_KNOWN:
            if depth < 3 and not field.message_type.GetOptions().map_entry and not repeated(field):
                parameters += _query_parameters(field.message_type, schemas, bound, path + ".",
                                                depth + 1)
            continue
        schema = schemas.field(field)
        parameter = {"name": path, "in": "query", "required": False, "schema": schema}
        if repeated(field):
            parameter.update(style="form", explode=True)
        parameters.append(parameter)
    return parameters


def _operation(
    route: Route, schemas: Schemas, headers: Sequence[tuple[str, str]] = ()
) -> dict[str, Any]:
    method = route.method
    parameters: list[dict[str, Any]] = [
        {"name": path, "in": "path", "required": True,
         "schema": schemas.field(_leaf(method.input_type, path))}
        for path in route.variables.values()
    ]
    parameters += [{"name": name, "in": "header", "required": False,
                    "description": description, "schema": {"type": "string"}}
                   for name, description in headers]
    operation: dict[str, Any] = {
        "operationId": f"{method.containing_service.name}_{method.name}",
        "tags": [method.containing_service.full_name],
        "summary": f"{method.containing_service.full_name}.{method.name} over HTTP/JSON",
    }
    if route.body == "*":
        body_schema = schemas.ref(method.input_type)
    elif route.body:
        body_schema = schemas.field(method.input_type.fields_by_name[route.body])
    if route.body:
        operation["requestBody"] = {"required": True, "content": {
            "application/json": {"schema": body_schema}}}
    if route.body != "*":
        bound = set(route.variables.values()) | ({route.body} if route.body else set())
        parameters += _query_parameters(method.input_type, schemas, bound)
    if parameters:
        operation["parameters"] = parameters
    if route.response_body:
        answer = schemas.field(method.output_type.fields_by_name[route.response_body])
    else:
        answer = schemas.ref(method.output_type)
    error = {"application/json": {"schema": {"$ref": SCHEMAS + STATUS}}}
    errors = sorted({status for status in HTTP_STATUS.values() if status != 200})
    operation["responses"] = {
        "200": {"description": "OK", "content": {"application/json": {"schema": answer}}},
        **{str(status): {"description": _reason(status), "content": error}
           for status in errors},
    }
    return operation


def _leaf(message: Descriptor, path: str) -> FieldDescriptor:
    field = None
    descriptor: Any = message
    for name in path.split("."):
        field = descriptor.fields_by_name[name]
        descriptor = field.message_type
    assert field is not None
    return field


def _reason(status: int) -> str:
    codes = sorted(code.name for code, s in HTTP_STATUS.items() if s == status)
    return "gRPC " + ", ".join(codes)


def build_document(
    title: str, version: str, services: Sequence[ServiceDescriptor],
    headers: Mapping[str, Sequence[tuple[str, str]]] | None = None,
) -> dict[str, Any]:
    """The OpenAPI document (a plain dict) of the services' google.api.http routes.

    `headers`: the request headers a method reads besides its message (e.g. an
    Idempotency-Key), by full method name (`report.v1.ReportService.PostReport`), as
    (name, description) pairs: optional header parameters of its operations.
    """
    schemas = Schemas()
    paths: dict[str, dict[str, Any]] = {}
    seen: dict[str, int] = {}  # an additional binding gets the method's id with a number
    for route in routes_for(services):
        path = _openapi_path(route.template, route.variables)
        operation = _operation(route, schemas, (headers or {}).get(route.method.full_name, ()))
        first = operation["operationId"]
        seen[first] = seen.get(first, 0) + 1
        if seen[first] > 1:
            operation["operationId"] = f"{first}{seen[first]}"
        paths.setdefault(path, {})[route.verb.lower()] = operation
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": title, "version": version,
                 "description": "HTTP/JSON transcoding of the gRPC API (google.api.http rules)"},
        "paths": paths,
        "components": {"schemas": schemas.schemas},
    }
