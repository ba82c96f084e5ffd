"""NATS JetStream: streams, durable pull consumers, acks (`brokerline[jetstream]`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .broker import JetStreamBroker
    from .settings import StreamSettings

__all__ = ["JetStreamBroker", "StreamSettings"]

# the broker module imports the client library (nats-py); the settings do not, so the
# configuration can be validated where the client is not installed
_LAZY = {"JetStreamBroker": ".broker", "StreamSettings": ".settings"}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_LAZY[name], __name__), name)
