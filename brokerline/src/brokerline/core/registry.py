"""Maps a configured broker type to its plugin, importing only the one that is used.

Each plugin's client library comes with the library's extra of the same name
(`brokerline[pulsar]`, `brokerline[nats]`); a type whose client is not installed is not
known, so a service lists exactly the brokers it can use.

A plugin of your own joins with `register_plugin("mybroker", "my_pkg.broker:MyBroker")`, or
from its distribution's entry point in the group `brokerline.brokers`
(`mybroker = "my_pkg.broker:MyBroker"`); its factory is called with `addresses=[...]`, the
configured `broker.address` list.
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
    "kafka": ("brokerline.kafka.broker:KafkaBroker", "aiokafka", "kafka"),
}


#: entry-point group through which installed distributions add broker types
ENTRY_POINT_GROUP = "brokerline.brokers"

#: types added by `register_plugin` or entry points (their factory takes `addresses=`)
_registered: dict[str, tuple[str, str | None, str | None]] = {}
_entry_points_loaded = False


def register_plugin(type_name: str, target: str, client: str | None = None) -> None:
    """Add broker type `type_name`: `target` is "module:Factory", imported when first used;
    `client` is the module of its client library (the type is known only where it is
    installed)."""
    if type_name in PLUGINS:
        raise ValueError(f"broker type {type_name!r} is built in; choose another name")
    if ":" not in target:
        raise ValueError(f"plugin target {target!r} must be 'module:Factory'")
    _registered[type_name] = (target, client, None)


def is_registered(type_name: str) -> bool:
    """True for a type added by `register_plugin` or an entry point (not a built-in)."""
    _load_entry_points()
    return type_name in _registered


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    from importlib.metadata import entry_points

    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name not in PLUGINS:
            _registered.setdefault(entry.name, (entry.value, None, None))


def _plugins() -> dict[str, tuple[str, str | None, str | None]]:
    _load_entry_points()
    return {**_registered, **PLUGINS}


def _installed(client: str | None) -> bool:
    return client is None or importlib.util.find_spec(client) is not None


def known_types() -> list[str]:
    """The broker types this installation can use (their client library is installed)."""
    return sorted(name for name, (_, client, _) in _plugins().items() if _installed(client))


def plugin_factory(type_name: str) -> Callable[..., Broker]:
    """The class that implements broker `type_name`, or a clear error listing the known ones."""
    entry = _plugins().get(type_name)
    if entry is None:
        raise UnknownBrokerType(
            f"unknown broker type {type_name!r}; set the broker type to one of: "
            + ", ".join(known_types())
        )
    target, client, extra = entry
    if not _installed(client):
        raise UnknownBrokerType(
            f"broker type {type_name!r} needs its client library, which is not installed; "
            f"install {f'brokerline[{extra}]' if extra else 'it'} or set the broker type to "
            "one of: "
            + ", ".join(known_types())
        )
    module_name, _, attr = target.partition(":")
    factory: Callable[..., Broker] = getattr(importlib.import_module(module_name), attr)
    return factory


def create_broker(type_name: str, **settings: Any) -> Broker:
    return plugin_factory(type_name)(**settings)
