"""Apache Kafka: consumer groups, manual commits, idempotent producer (`brokerline[kafka]`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .broker import KafkaBroker
    from .settings import KafkaSettings

__all__ = ["KafkaBroker", "KafkaSettings"]

# the broker module imports the client library (aiokafka); the settings do not, so the
# configuration can be validated where the client is not installed
_LAZY = {"KafkaBroker": ".broker", "KafkaSettings": ".settings"}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_LAZY[name], __name__), name)
