"""The AsyncAPI document: valid 2.6 structure, every registered channel, schemas that resolve.

No PyPI package ships the official AsyncAPI JSON schema, so the structure the specification
requires is checked here explicitly.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from brokerline.asyncapi import build_document, render
from brokerline.catalog import Catalog, read_catalog

from {{ cookiecutter.package_name }}.conf import AppConfig, load_config
from {{ cookiecutter.package_name }}.containers import Container

PROJECT = Path(__file__).resolve().parent.parent
COMPONENT_NAME = re.compile(r"^[a-zA-Z0-9.\-_]+$")
OPERATION_KEYS = {"operationId", "summary", "description", "message", "bindings", "tags",
                  "traits", "security", "externalDocs"}


@pytest.fixture
async def config_and_catalog() -> tuple[AppConfig, Catalog]:
    config = load_config(environ={})
    return config, await read_catalog(Container(config=config))


def resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), f"only local references are used, not {ref}"
    node: Any = document
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, f"{ref} does not resolve"
        node = node[part]
    return node


def all_refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for value in node.values() for r in all_refs(value)]
    if isinstance(node, list):
        return [r for item in node for r in all_refs(item)]
    return []


def messages_of(document: dict[str, Any], operation: dict[str, Any]) -> list[dict[str, Any]]:
    message = operation["message"]
    refs = message.get("oneOf", [message])
    return [resolve(document, ref["$ref"]) for ref in refs]


def test_document_has_the_required_structure(config_and_catalog: tuple[AppConfig, Catalog]) -> None:
    config, catalog = config_and_catalog
    doc = build_document(config, catalog)
    assert doc["asyncapi"] == "2.6.0"
    assert isinstance(doc["info"]["title"], str) and doc["info"]["title"]
    assert isinstance(doc["info"]["version"], str) and doc["info"]["version"]
    assert isinstance(doc["channels"], dict)
    for name, channel in doc["channels"].items():
        assert set(channel) <= {"publish", "subscribe", "description", "parameters", "bindings"}
        assert {"publish", "subscribe"} & set(channel), f"channel {name} has no operation"
        for operation in (channel.get("publish"), channel.get("subscribe")):
            if operation is not None:
                assert set(operation) - {"x-groups"} <= OPERATION_KEYS
                for message in messages_of(doc, operation):
                    assert {"payload", "contentType", "name"} <= set(message)
    for section in ("messages", "schemas"):
        for key in doc["components"][section]:
            assert COMPONENT_NAME.match(key), f"components.{section} key {key!r} is invalid"
    for server in doc.get("servers", {}).values():
        assert {"url", "protocol"} <= set(server)


def test_every_reference_resolves(config_and_catalog: tuple[AppConfig, Catalog]) -> None:
    doc = build_document(*config_and_catalog)
    for ref in all_refs(doc):
        resolve(doc, ref)


def test_every_registered_subscriber_and_publisher_is_a_channel(
    config_and_catalog: tuple[AppConfig, Catalog],
) -> None:
    config, catalog = config_and_catalog
    doc = build_document(config, catalog)
    for registration in catalog.subscriptions:
        channel = doc["channels"][registration.topic]
        assert "publish" in channel, f"{registration.topic}: no operation for its subscriber"
        if registration.group:
            assert registration.group in channel["publish"]["x-groups"]
    for publication in catalog.publications:
        assert "subscribe" in doc["channels"][publication.topic]
    assert len(doc["channels"]) == len(
        {r.topic for r in catalog.subscriptions} | {p.topic for p in catalog.publications}
    )


def test_protobuf_and_pydantic_messages_have_field_schemas() -> None:
    from brokerline.catalog import Publication
    from pydantic import BaseModel

    class OrderCreated(BaseModel):
        order_id: str
        amount_cents: int

    catalog = Catalog([], [Publication("orders.created", OrderCreated, "Test")])
    doc = build_document(load_config(environ={}), catalog)
    schema = resolve(doc, doc["components"]["messages"]["OrderCreated"]["payload"]["$ref"])
    assert set(schema["properties"]) == {"order_id", "amount_cents"}
{%- if cookiecutter.include_sample %}

    from {{ cookiecutter.package_name }}.api.events.v1.events_pb2 import RealTimeWarehousingData

    catalog = Catalog([], [Publication("t", RealTimeWarehousingData, "Test")])
    doc = build_document(load_config(environ={}), catalog)
    message = doc["components"]["messages"]["events.v1.RealTimeWarehousingData"]
    assert message["contentType"] == "application/x-protobuf"
    schema = resolve(doc, message["payload"]["$ref"])
    fields = {f.name for f in RealTimeWarehousingData.DESCRIPTOR.fields}
    assert set(schema["properties"]) == fields
    assert schema["properties"]["create_time_ms"] == {"type": "integer", "format": "int64"}
{%- endif %}


def test_the_command_prints_yaml_and_json(tmp_path: Path) -> None:
    def asyncapi(*args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "{{ cookiecutter.package_name }}", "asyncapi", *args],
            capture_output=True, text=True, timeout=120, cwd=PROJECT, env=dict(os.environ),
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    from_yaml = yaml.safe_load(asyncapi())
    out = tmp_path / "asyncapi.json"
    asyncapi("--format", "json", "--output", str(out))
    assert json.loads(out.read_text()) == from_yaml
    assert from_yaml == yaml.safe_load(render(from_yaml))
