"""NATS core: subjects, queue groups, at-most-once (`brokerline[nats]`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .broker import NatsBroker
    from .embedded import nats_server
    from .settings import NatsSettings

__all__ = ["NatsBroker", "NatsSettings", "nats_server"]

# the broker module imports the client library (nats-py); the settings do not, so the
# configuration can be validated where the client is not installed
_LAZY = {"NatsBroker": ".broker", "NatsSettings": ".settings", "nats_server": ".embedded"}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_LAZY[name], __name__), name)
