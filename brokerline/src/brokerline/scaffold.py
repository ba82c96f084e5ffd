"""`add-subscriber`: writes a handler, its registration line and its test, in a service.

    <cli> add-subscriber orders.created OrderCreatedHandler [--message pydantic] [--group G]

writes `service/order_created_handler.py` (a class with one `handle` method and, for
`pydantic`, a model stub to fill in), adds `server.register(...)` to `server/broker.py` (the
service's broker server constructor, `new_broker_server`) and writes
`tests/test_order_created_handler.py`, which publishes to the topic on the in-memory broker
and checks that the handler ran. `--message` is a protobuf message of the package's `api`
(`events.v1.UserReportData`) or one of `pydantic`, `dict`, `bytes`. Nothing is written
unless all three changes can be made.
"""

from __future__ import annotations

import importlib
import keyword
import pkgutil
import re
from dataclasses import dataclass
from pathlib import Path
from string import Template

SIMPLE_KINDS = ("pydantic", "dict", "bytes")
#: the module (under the package) whose constructor registers the subscribers
REGISTRATION_MODULE = "server/broker.py"
REGISTRATION_FUNCTION = "new_broker_server"
_TOPIC = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:-]*$")
_CLASS_NAME = re.compile(r"^[A-Z][A-Za-z0-9]*$")


class ScaffoldError(Exception):
    """add-subscriber cannot do what was asked; the message says why and what to do."""


@dataclass(frozen=True)
class ServicePackage:
    """The service being extended: its import name and its source directory."""

    name: str  # e.g. report_pipeline
    directory: Path  # src/<name>/ of the project checkout


@dataclass(frozen=True)
class MessageKind:
    """How a handler's message type appears in the generated code."""

    annotation: str  # in the handler's signature
    imports: tuple[str, ...]  # import lines of the handler module, beyond the standard ones
    test_imports: tuple[str, ...]  # import lines the test needs for `sample`
    sample: str  # an expression the test publishes
    model_stub: str = ""  # class definition written into the handler module


@dataclass(frozen=True)
class Plan:
    """Everything add-subscriber will write, computed before anything is written."""

    handler_path: Path
    handler_source: str
    test_path: Path
    test_source: str
    subscribers_path: Path
    subscribers_source: str


def snake_case(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def project_root(package: ServicePackage) -> Path:
    root = package.directory.parent.parent
    if package.directory.parent.name != "src" or not (root / "pyproject.toml").is_file():
        raise ScaffoldError(
            f"add-subscriber edits the project's source, but {package.name} is installed from "
            f"{package.directory}; run it from the project with an editable install "
            "(pip install -e .)"
        )
    return root


def message_kind(package: ServicePackage, message: str, model_name: str) -> MessageKind:
    if message == "pydantic":
        stub = Template(_MODEL).substitute(model=model_name)
        return MessageKind(
            model_name,
            ("from pydantic import BaseModel, ConfigDict",),
            (),
            f"{model_name}()",
            stub,
        )
    if message == "dict":
        return MessageKind(
            "dict[str, Any]", ("from typing import Any",), (), '{"hello": "world"}'
        )
    if message == "bytes":
        return MessageKind("bytes", (), (), 'b"hello"')
    module, name = find_protobuf_message(package, message)
    return MessageKind(
        name,
        (f"from ..{module} import {name}",),
        (f"from {package.name}.{module} import {name}",),
        f"{name}()",
    )


def find_protobuf_message(package: ServicePackage, full_name: str) -> tuple[str, str]:
    """(module under the package, class name) of the compiled protobuf message `full_name`."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", full_name):
        raise ScaffoldError(
            f"--message {full_name!r} is neither {', '.join(SIMPLE_KINDS)} nor a protobuf "
            "message name such as events.v1.UserReportData"
        )
    found: list[str] = []
    prefix = f"{package.name}.api."
    for info in pkgutil.walk_packages([str(package.directory / "api")], prefix=prefix):
        if not info.name.endswith("_pb2"):
            continue
        module = importlib.import_module(info.name)
        descriptor = getattr(module, "DESCRIPTOR", None)
        if descriptor is None:
            continue
        for message in descriptor.message_types_by_name.values():
            found.append(message.full_name)
            if full_name in (message.full_name, message.name) and hasattr(module, message.name):
                return info.name[len(package.name) + 1 :], message.name
    known = ", ".join(sorted(found)) or "none (compile the protos: make proto)"
    raise ScaffoldError(
        f"no protobuf message {full_name!r} in {package.name}.api (known: {known}); add it to "
        f"proto/ and run `make proto`, or use --message {'/'.join(SIMPLE_KINDS)}"
    )


def _import_block(*groups: list[str]) -> str:
    """Import sections in isort order (stdlib, third party, local), one blank line between."""
    return "\n\n".join("\n".join(sorted(g, key=_import_sort_key)) for g in groups if g)


def _import_sort_key(line: str) -> tuple[int, str]:
    return (0 if line.startswith("import ") else 1, line.split(" import ")[0].lower())


def render_handler(topic: str, handler: str, kind: MessageKind) -> str:
    stdlib = ["import logging"]
    third_party = ["from brokerline import MessageContext"]
    local: list[str] = []
    for line in kind.imports:
        if line.startswith("from .."):
            local.append(line)
        elif line.startswith("from typing"):
            stdlib.append(line)
        else:
            third_party.append(line)
    body = Template(_HANDLER).substitute(
        topic=topic, handler=handler, annotation=kind.annotation,
        imports=_import_block(stdlib, third_party, local),
        model=("\n\n" + kind.model_stub) if kind.model_stub else "",
    )
    return body


def render_test(
    package: ServicePackage, topic: str, handler: str, module: str, kind: MessageKind
) -> str:
    names = [handler] + ([kind.annotation] if kind.model_stub else [])
    stdlib = ["from typing import Any"] if kind.annotation.startswith("dict[") else []
    library = [
        "from brokerline import MessageContext",
        "from brokerline.catalog import handler_name, read_catalog",
        "from brokerline.memory import MemoryBroker",
        "from brokerline.server.broker import BrokerServer",
        "from brokerline.testing import eventually",
    ]
    first_party = [
        f"from {package.name}.conf import load_config",
        f"from {package.name}.containers import Container",
        f"from {package.name}.service.{module} import {', '.join(sorted(names))}",
        *kind.test_imports,
    ]
    return Template(_TEST).substitute(
        topic=topic, handler=handler, annotation=kind.annotation, sample=kind.sample,
        imports=_import_block(stdlib, library, first_party),
    )


def add_registration(source: str, topic: str, handler: str, module: str, group: str | None) -> str:
    """The registration module with the new import and `server.register(...)` line."""
    if f'"{topic}"' in source:
        raise ScaffoldError(
            f"topic {topic!r} is already registered in {REGISTRATION_MODULE}; "
            "remove that registration first or choose another topic"
        )
    start = source.find(f"def {REGISTRATION_FUNCTION}(")
    end = source.find("\n    return server\n", start)
    if start < 0 or end < 0:
        raise ScaffoldError(
            f"{REGISTRATION_MODULE} has no `def {REGISTRATION_FUNCTION}(...)` ending in "
            "`return server`; add the registration by hand"
        )
    group_arg = f'"{group}"' if group else "group"
    line = f'    server.register("{topic}", {handler}().handle, group={group_arg})'
    if len(line) > 100:
        line = (f'    server.register(\n        "{topic}", {handler}().handle, '
                f"group={group_arg}\n    )")
    body = source[start:end].replace("\n    del group", "")
    source = source[:start] + body + "\n" + line + source[end:]
    return _add_import(source, f"from ..service.{module} import {handler}")


def _add_import(source: str, new_import: str) -> str:
    lines = source.split("\n")
    positions = [i for i, ln in enumerate(lines) if re.match(r"from \.\.[\w.]* import ", ln)]
    if not positions:
        positions = [i for i, ln in enumerate(lines) if ln.startswith("from .")]
        if not positions:
            raise ScaffoldError(f"{REGISTRATION_MODULE} has no relative imports to extend")
        lines.insert(positions[0], new_import)
        return "\n".join(lines)
    first, last = positions[0], positions[-1]
    if last - first + 1 != len(positions):
        raise ScaffoldError(
            f"{REGISTRATION_MODULE} has its imports split; add the import by hand"
        )
    block = sorted([*lines[first : last + 1], new_import], key=_import_sort_key)
    return "\n".join([*lines[:first], *block, *lines[last + 1 :]])


def plan_subscriber(
    package: ServicePackage,
    topic: str,
    handler: str,
    message: str = "pydantic",
    group: str | None = None,
) -> Plan:
    if not _TOPIC.match(topic):
        raise ScaffoldError(
            f"topic {topic!r} is not a valid topic name; use letters, digits and . _ - / :"
        )
    if not _CLASS_NAME.match(handler) or keyword.iskeyword(handler):
        raise ScaffoldError(
            f"handler name {handler!r} is not a class name; use CamelCase such as OrderHandler"
        )
    if group is not None and not _TOPIC.match(group):
        raise ScaffoldError(f"group {group!r} is not a valid group name")
    root = project_root(package)
    module = snake_case(handler)
    base = handler.removesuffix("Handler") or handler
    model_name = base if base != handler else f"{handler}Message"
    kind = message_kind(package, message, model_name)
    handler_path = package.directory / "service" / f"{module}.py"
    test_path = root / "tests" / f"test_{module}.py"
    subscribers_path = package.directory / REGISTRATION_MODULE
    for path in (handler_path, test_path):
        if path.exists():
            raise ScaffoldError(
                f"{path.relative_to(root)} already exists; add-subscriber never overwrites a "
                "file: choose another handler name or delete the file"
            )
    subscribers = add_registration(subscribers_path.read_text(), topic, handler, module, group)
    return Plan(
        handler_path, render_handler(topic, handler, kind),
        test_path, render_test(package, topic, handler, module, kind),
        subscribers_path, subscribers,
    )


def add_subscriber(
    package: ServicePackage,
    topic: str,
    handler: str,
    message: str = "pydantic",
    group: str | None = None,
) -> list[Path]:
    """Write the handler module, its registration and its test; returns the paths written."""
    plan = plan_subscriber(package, topic, handler, message, group)
    plan.handler_path.write_text(plan.handler_source)
    plan.test_path.write_text(plan.test_source)
    plan.subscribers_path.write_text(plan.subscribers_source)
    return [plan.handler_path, plan.subscribers_path, plan.test_path]


_MODEL = '''\
class $model(BaseModel):
    """The message (a stub: declare its fields; unknown fields are kept meanwhile)."""

    model_config = ConfigDict(extra="allow")
'''

_HANDLER = '''\
"""$handler: the subscriber of `$topic`."""

from __future__ import annotations

$imports

log = logging.getLogger(__name__)
$model

class $handler:
    """Registered for `$topic` in server/broker.py.

    Return to ack; raise (any exception, or Retry) to have the message redelivered with
    backoff; raise Reject(reason) to dead-letter it at once. Delivery is at least once: make
    the work idempotent, so that a redelivered message changes nothing twice.
    """

    async def handle(self, msg: $annotation, ctx: MessageContext) -> None:
        log.info("%s: message %s on %s", type(self).__name__, ctx.message_id, ctx.topic)
'''

_TEST = '''\
"""$handler gets what is published to its topic (written by add-subscriber).

Topic: `$topic`.
"""

from __future__ import annotations

$imports

TOPIC = "$topic"


class Recording$handler($handler):
    """$handler that also remembers the messages it handled."""

    def __init__(self) -> None:
        super().__init__()
        self.handled: list[$annotation] = []

    async def handle(self, msg: $annotation, ctx: MessageContext) -> None:
        await super().handle(msg, ctx)
        self.handled.append(msg)


async def test_a_published_message_reaches_the_handler() -> None:
    broker = MemoryBroker()
    await broker.connect()
    handler = Recording$handler()
    server = BrokerServer(broker)
    server.register(TOPIC, handler.handle, group="test")
    await server.start()
    try:
        await broker.publish(TOPIC, $sample)
        await eventually(lambda: len(handler.handled) == 1)
    finally:
        await server.stop(5)
        await broker.close(timeout=5)


async def test_the_handler_is_registered_for_its_topic() -> None:
    catalog = await read_catalog(Container(config=load_config(environ={})))
    registered = [(r.topic, handler_name(r.handler)) for r in catalog.subscriptions]
    assert (TOPIC, "$handler.handle") in registered
'''
