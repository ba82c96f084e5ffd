"""Maps a configured broker type to its plugin, importing only the one that is used."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from .base import Broker
from .errors import UnknownBrokerType

#: type name -> "module:factory" (relative to this package); plugins not generated are absent
{%- set brokers = cookiecutter.brokers.replace(' ', '').split(',') %}
PLUGINS: dict[str, str] = {
    "memory": ".memory:MemoryBroker",
{%- if 'nats' in brokers %}
    "nats": ".nats:NatsBroker",
{%- endif %}
{%- if 'jetstream' in brokers %}
    "jetstream": ".jetstream:JetStreamBroker",
{%- endif %}
{%- if 'pulsar' in brokers %}
    "pulsar": ".pulsar:PulsarBroker",
{%- endif %}
}


def known_types() -> list[str]:
    return sorted(PLUGINS)


def plugin_factory(type_name: str) -> Callable[..., Broker]:
    """The class that implements broker `type_name`, or a clear error listing the known ones."""
    try:
        target = PLUGINS[type_name]
    except KeyError:
        raise UnknownBrokerType(
            f"unknown broker type {type_name!r}; set the broker type to one of: "
            + ", ".join(known_types())
        ) from None
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name, __package__)
    factory: Callable[..., Broker] = getattr(module, attr)
    return factory


def create_broker(type_name: str, **settings: Any) -> Broker:
    return plugin_factory(type_name)(**settings)
