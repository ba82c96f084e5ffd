"""Maps a configured broker type to its plugin, importing only the one that is used.

Each plugin's client library comes with the library's extra of the same name
(`brokerline[pulsar]`, `brokerline[nats]`); a type whose client is not installed is not
known, so a service lists exactly the brokers it can use.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from typing import Any

from brokerline.core.base import Broker
from brokerline.core.errors import UnknownBrokerType

#: type name -> ("module:factory", the client module its extra installs, the extra)
PLUGINS: dict[str, tuple[str, str | None, str | None]] = {
    "memory": ("brokerline.memory.broker:MemoryBroker", None, None),
    "nats": ("brokerline.nats.broker:NatsBroker", "nats", "nats"),
    "jetstream": ("brokerline.jetstream.broker:JetStreamBroker", "nats", "jetstream"),
    "pulsar": ("brokerline.pulsar.broker:PulsarBroker", "pulsar", "pulsar"),
}


def _installed(client: str | None) -> bool:
    return client is None or importlib.util.find_spec(client) is not None


def known_types() -> list[str]:
    """The broker types this installation can use (their client library is installed)."""
    return sorted(name for name, (_, client, _) in PLUGINS.items() if _installed(client))


def plugin_factory(type_name: str) -> Callable[..., Broker]:
    """The class that implements broker `type_name`, or a clear error listing the known ones."""
    entry = PLUGINS.get(type_name)
    if entry is None:
        raise UnknownBrokerType(
            f"unknown broker type {type_name!r}; set the broker type to one of: "
            + ", ".join(known_types())
        )
    target, client, extra = entry
    if not _installed(client):
        raise UnknownBrokerType(
            f"broker type {type_name!r} needs its client library, which is not installed; "
            f"install brokerline[{extra}] or set the broker type to one of: "
            + ", ".join(known_types())
        )
    module_name, _, attr = target.partition(":")
    factory: Callable[..., Broker] = getattr(importlib.import_module(module_name), attr)
    return factory


def create_broker(type_name: str, **settings: Any) -> Broker:
    return plugin_factory(type_name)(**settings)
