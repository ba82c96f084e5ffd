"""Apache Pulsar: topics, the four subscription types, retry and dead-letter topics.

Needs the `brokerline[pulsar]` extra (the pulsar-client library).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .broker import PulsarBroker
    from .embedded import pulsar_lite
    from .settings import PulsarSettings

__all__ = ["PulsarBroker", "PulsarSettings", "pulsar_lite"]

# the broker module imports the client library (pulsar-client); the settings do not, so the
# configuration can be validated where the client is not installed
_LAZY = {"PulsarBroker": ".broker", "PulsarSettings": ".settings", "pulsar_lite": ".embedded"}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_LAZY[name], __name__), name)
