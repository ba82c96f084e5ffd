"""What the service subscribes to and publishes, read from its wiring without connecting.

The broker server is built by the container exactly as `serve` builds it, but on an
unconnected in-memory broker and a database that is never opened, so the answer is the truth
of `server/broker.py` and needs no running broker or database. `asyncapi` documents it;
the tests use it to check that a handler is registered.
"""

from __future__ import annotations

import contextlib
import typing
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from dependency_injector import providers
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from brokerline.core.codec import batch_item_type, message_type_of
from brokerline.memory.broker import MemoryBroker
from brokerline.server.broker import Registration
from brokerline.sql.database import Database


@dataclass(frozen=True)
class Publication:
    """A topic the service publishes to, and the type of its messages."""

    topic: str
    message_type: Any
    publisher: str


@dataclass(frozen=True)
class Catalog:
    subscriptions: list[Registration]
    publications: list[Publication]


def handler_name(handler: Callable[..., Any]) -> str:
    """`Class.method` or `function`: how a handler is named in docs and logs."""
    return str(getattr(handler, "__qualname__", repr(handler)))


def handler_message_type(handler: Callable[..., Any]) -> Any:
    """The type of the messages a handler takes (a batch handler's `list[T]`: `T`)."""
    tp = message_type_of(handler)
    return batch_item_type(handler) if typing.get_origin(tp) in (list, Sequence) else tp


async def read_catalog(container: Any) -> Catalog:
    """The registered subscriptions and the publisher's topics, as `serve` would wire them.

    `container` is the service's container, not yet used; its broker and database are
    replaced here by an unconnected memory broker and a database that is never opened.
    """
    async with _unconnected(container):
        server = await _resolved(container.broker_server())
        publications: list[Publication] = []
        if hasattr(container, "publisher"):
            publisher = await _resolved(container.publisher())
            name = type(publisher).__name__
            publications = [
                Publication(topic, tp, name) for topic, tp in publisher.channels().items()
            ]
        return Catalog(list(server.registrations), publications)


async def read_http_server(container: Any) -> Any:
    """The service's HTTP server as `serve` builds it (never started), or None if it has none.

    The `openapi` command documents its routes: the same servicers and rules it serves.
    """
    if not hasattr(container, "http_server"):
        return None
    async with _unconnected(container):
        return await _resolved(container.http_server())


@contextlib.asynccontextmanager
async def _unconnected(container: Any) -> AsyncIterator[None]:
    engine = create_async_engine("sqlite+aiosqlite://")  # never connected
    container.broker.override(providers.Object(MemoryBroker()))
    container.database.override(
        providers.Object(Database(engine, async_sessionmaker(engine, expire_on_commit=False)))
    )
    try:
        yield
    finally:
        await _resolved(container.shutdown_resources())
        await engine.dispose()


async def _resolved(value: Any) -> Any:
    """A provider's value: awaited when the provider chain includes async resources."""
    if hasattr(value, "__await__"):
        return await value
    return value
