"""Regex subscriptions with a pattern auto-discovery period of our choosing.

A regex consumer lists the namespace's topics at subscribe time and then every
`patternAutoDiscoveryPeriod` seconds (the C++ client has no broker-pushed topic list), so a
topic created after subscribing is only picked up at the next listing: 60 s by default.
`pulsar.asyncio.Client.subscribe` does not take that period, so pattern consumers are made
here from the binding's consumer configuration, with the same keywords `subscribe` takes.
"""

from __future__ import annotations

import asyncio
from typing import Any

import _pulsar
import pulsar
from pulsar.asyncio import Client, Consumer, PulsarException

#: `Client.subscribe` keywords whose configuration setter has another name
SETTERS = {"initial_position": "subscription_initial_position",
           "is_read_compacted": "read_compacted"}
#: keywords whose value wraps the binding's object (`.policy()`)
POLICIES = ("dead_letter_policy", "key_shared_policy", "batch_receive_policy")


def pattern_configuration(discovery_period: int, **kwargs: Any) -> _pulsar.ConsumerConfiguration:
    """A consumer configuration from `Client.subscribe` keywords (unset ones: the client's
    defaults, which are `subscribe`'s), with the auto-discovery period in seconds."""
    conf = _pulsar.ConsumerConfiguration()
    conf.schema(pulsar.schema.BytesSchema().schema_info())
    conf.pattern_auto_discovery_period(discovery_period)
    for name, value in kwargs.items():
        if name == "is_pattern_topic" or value is None:
            continue
        if name == "properties":
            for key, text in value.items():
                conf.property(key, text)
            continue
        if name in POLICIES:
            value = value.policy()
        getattr(conf, SETTERS.get(name, name))(value)  # an unknown keyword fails loudly
    return conf


async def subscribe_pattern(
    client: Client, pattern: str, subscription: str, discovery_period: int, **kwargs: Any
) -> Consumer:
    """`client.subscribe(pattern, subscription, is_pattern_topic=True, **kwargs)`, with
    topics that appear later found within `discovery_period` seconds."""
    conf = pattern_configuration(discovery_period, **kwargs)
    loop = asyncio.get_running_loop()
    future: asyncio.Future[_pulsar.Consumer] = loop.create_future()

    def settle(value: Any) -> None:
        if future.done():
            return
        if isinstance(value, _pulsar.Error):
            future.set_exception(PulsarException(value.error, value.message))
        else:
            future.set_result(value)

    def completed(value: Any) -> None:  # the client's thread
        loop.call_soon_threadsafe(settle, value)

    binding: _pulsar.Client = client._client  # the asyncio client's own binding object
    binding.subscribe_async_v2(_pulsar.TopicRegex(pattern), subscription, conf, completed)
    return Consumer(await future, pulsar.schema.BytesSchema())
