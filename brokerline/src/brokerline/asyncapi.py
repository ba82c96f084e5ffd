"""An AsyncAPI 2.6 document of the service: its channels, operations and message schemas.

Built from the wiring (`catalog.read_catalog`): every registered subscriber becomes a
`publish` operation of its channel (in AsyncAPI 2, `publish` is what others send to the
service) and every publisher topic a `subscribe` operation (what the service sends). Message
schemas come from the handler annotations: a protobuf descriptor becomes a JSON schema of its
fields, a pydantic model or dataclass its `model_json_schema`, `dict` an object, `bytes` a
binary string.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
import typing
from collections.abc import Iterable
from importlib import metadata
from typing import Any, cast

import yaml
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message as ProtobufMessage
from pydantic import BaseModel, TypeAdapter

from brokerline.catalog import Catalog, handler_message_type, handler_name
from brokerline.config import ServiceConfig
from brokerline.core.codec import JSON, OCTET_STREAM, PROTOBUF

ASYNCAPI_VERSION = "2.6.0"
SCHEMAS = "#/components/schemas/"
MESSAGES = "#/components/messages/"
PROTOCOLS = {"pulsar": "pulsar", "nats": "nats", "jetstream": "nats"}

_F = FieldDescriptor
_SCALARS: dict[int, dict[str, Any]] = {
    _F.TYPE_DOUBLE: {"type": "number", "format": "double"},
    _F.TYPE_FLOAT: {"type": "number", "format": "float"},
    _F.TYPE_INT64: {"type": "integer", "format": "int64"},
    _F.TYPE_SINT64: {"type": "integer", "format": "int64"},
    _F.TYPE_SFIXED64: {"type": "integer", "format": "int64"},
    _F.TYPE_UINT64: {"type": "integer", "format": "uint64", "minimum": 0},
    _F.TYPE_FIXED64: {"type": "integer", "format": "uint64", "minimum": 0},
    _F.TYPE_INT32: {"type": "integer", "format": "int32"},
    _F.TYPE_SINT32: {"type": "integer", "format": "int32"},
    _F.TYPE_SFIXED32: {"type": "integer", "format": "int32"},
    _F.TYPE_UINT32: {"type": "integer", "format": "uint32", "minimum": 0},
    _F.TYPE_FIXED32: {"type": "integer", "format": "uint32", "minimum": 0},
    _F.TYPE_BOOL: {"type": "boolean"},
    _F.TYPE_STRING: {"type": "string"},
    _F.TYPE_BYTES: {"type": "string", "contentEncoding": "base64"},
}
_WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "pattern": r"^-?\d+(\.\d+)?s$"},
    "google.protobuf.Struct": {"type": "object"},
    "google.protobuf.Value": {},
    "google.protobuf.Any": {"type": "object"},
    "google.protobuf.Empty": {"type": "object", "maxProperties": 0},
}


class SchemaRegistry:
    """Collects the message and schema components, one entry per message type."""

    def __init__(self) -> None:
        self.schemas: dict[str, Any] = {}
        self.messages: dict[str, Any] = {}

    def message_ref(self, tp: Any) -> dict[str, str]:
        """A `$ref` to the message component of `tp`, adding the component on first use."""
        name, content_type, payload, title = self._message(tp)
        if name not in self.messages:
            self.messages[name] = {
                "name": name,
                "title": title,
                "contentType": content_type,
                "payload": payload,
            }
        return {"$ref": MESSAGES + name}

    def _message(self, tp: Any) -> tuple[str, str, dict[str, Any], str]:
        if inspect.isclass(tp) and issubclass(tp, ProtobufMessage):
            descriptor: Descriptor = cast(Any, tp).DESCRIPTOR
            return descriptor.full_name, PROTOBUF, self.protobuf_ref(descriptor), tp.__name__
        if inspect.isclass(tp) and issubclass(tp, BaseModel):
            schema = tp.model_json_schema(ref_template=SCHEMAS + "{model}")
            return tp.__name__, JSON, self._add_json_schema(tp.__name__, schema), tp.__name__
        if inspect.isclass(tp) and dataclasses.is_dataclass(tp):
            schema = TypeAdapter(tp).json_schema(ref_template=SCHEMAS + "{model}")
            return tp.__name__, JSON, self._add_json_schema(tp.__name__, schema), tp.__name__
        if tp is dict or typing.get_origin(tp) is dict:
            return "JsonObject", JSON, {"type": "object"}, "A JSON object"
        return "Bytes", OCTET_STREAM, {"type": "string", "format": "binary"}, "Raw bytes"

    def _add_json_schema(self, name: str, schema: dict[str, Any]) -> dict[str, str]:
        for def_name, definition in schema.pop("$defs", {}).items():
            self.schemas.setdefault(def_name, definition)
        self.schemas.setdefault(name, schema)
        return {"$ref": SCHEMAS + name}

    def protobuf_ref(self, descriptor: Descriptor) -> dict[str, Any]:
        if descriptor.full_name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[descriptor.full_name])
        name = descriptor.full_name
        if name not in self.schemas:
            self.schemas[name] = {}  # placeholder first: recursive messages refer to it
            self.schemas[name] = {
                "type": "object",
                "title": descriptor.name,
                "description": f"protobuf message {name}",
                "properties": {f.name: self._field_schema(f) for f in descriptor.fields},
            }
        return {"$ref": SCHEMAS + name}

    def _field_schema(self, field: FieldDescriptor) -> dict[str, Any]:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value = field.message_type.fields_by_name["value"]
            return {"type": "object", "additionalProperties": self._single(value)}
        single = self._single(field)
        if _is_repeated(field):
            return {"type": "array", "items": single}
        return single

    def _single(self, field: FieldDescriptor) -> dict[str, Any]:
        if field.type == _F.TYPE_MESSAGE:
            return self.protobuf_ref(field.message_type)
        if field.type == _F.TYPE_ENUM:
            return {"type": "string", "enum": [v.name for v in field.enum_type.values]}
        return dict(_SCALARS.get(field.type, {}))


def _is_repeated(field: FieldDescriptor) -> bool:
    repeated = getattr(field, "is_repeated", None)  # protobuf >= 5.29; `label` is deprecated
    if repeated is not None:
        return bool(repeated)
    return bool(field.label == _F.LABEL_REPEATED)


def operation_id(name: str) -> str:
    """`SaverService.save_event_report` -> `SaverService_save_event_report`."""
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def _one_or_many(refs: list[dict[str, str]]) -> dict[str, Any]:
    unique = [dict(t) for t in dict.fromkeys(tuple(r.items()) for r in refs)]
    return unique[0] if len(unique) == 1 else {"oneOf": unique}


def _servers(config: ServiceConfig) -> dict[str, Any]:
    protocol = PROTOCOLS.get(config.broker.type)
    if protocol is None:
        return {}
    addresses = config.broker.addresses()
    if not addresses:
        return {}
    return {
        f"{config.broker.type}-{i}" if len(addresses) > 1 else config.broker.type: {
            "url": address,
            "protocol": protocol,
            "description": f"the {config.broker.type} broker (broker.address)",
        }
        for i, address in enumerate(addresses, start=1)
    }


def _distribution_info(distribution: str) -> tuple[str, str]:
    """(version, one-line description) of the installed distribution."""
    try:
        meta = metadata.metadata(distribution)
    except metadata.PackageNotFoundError:
        return "0.0.0", ""
    return str(meta["Version"]), str((meta.get_all("Summary") or [""])[0])


def build_document(config: ServiceConfig, catalog: Catalog) -> dict[str, Any]:
    """The AsyncAPI document (a plain dict, ready for YAML or JSON)."""
    registry = SchemaRegistry()
    channels: dict[str, dict[str, Any]] = {}
    for topic, regs in _grouped(catalog.subscriptions, key=lambda r: r.topic).items():
        names = [handler_name(r.handler) for r in regs]
        groups = sorted({r.group for r in regs if r.group})
        operation: dict[str, Any] = {
            "operationId": operation_id(names[0]),
            "summary": f"Handled by {', '.join(names)}"
            + (f" (group {', '.join(groups)})" if groups else ""),
            "message": _one_or_many(
                [registry.message_ref(handler_message_type(r.handler)) for r in regs]
            ),
        }
        if groups:
            operation["x-groups"] = groups
            if PROTOCOLS.get(config.broker.type) == "nats":
                operation["bindings"] = {"nats": {"queue": groups[0], "bindingVersion": "0.1.0"}}
        channels.setdefault(topic, {})["publish"] = operation
    for topic, pubs in _grouped(catalog.publications, key=lambda p: p.topic).items():
        channels.setdefault(topic, {})["subscribe"] = {
            "operationId": operation_id(f"{pubs[0].publisher}_{topic}"),
            "summary": f"Published by {', '.join(sorted({p.publisher for p in pubs}))}",
            "message": _one_or_many([registry.message_ref(p.message_type) for p in pubs]),
        }
    version, description = _distribution_info(config.name)
    document: dict[str, Any] = {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {"title": config.name, "version": version},
        "defaultContentType": JSON,
    }
    if description:
        document["info"]["description"] = description
    servers = _servers(config)
    if servers:
        document["servers"] = servers
    document["channels"] = dict(sorted(channels.items()))
    document["components"] = {
        "messages": dict(sorted(registry.messages.items())),
        "schemas": dict(sorted(registry.schemas.items())),
    }
    return document


def _grouped(items: Iterable[Any], key: Any) -> dict[str, list[Any]]:
    grouped: dict[str, list[Any]] = {}
    for item in items:
        grouped.setdefault(key(item), []).append(item)
    return grouped


def render(document: dict[str, Any], fmt: str = "yaml") -> str:
    if fmt == "json":
        return json.dumps(document, indent=2) + "\n"
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
