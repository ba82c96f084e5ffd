"""A plugin that is not brokerline's runs the conformance suite, as the docs tell its author.

The plugin is defined here: an in-memory broker under a name of its own, which adds a header
naming the node that relayed each message (so it is a plugin, not brokerline's memory broker
run twice). A second, broken plugin loses the message key; run in a project of its own (a
pytester subprocess that loads brokerline's pytest plugin from its entry point, as a user's
project does), the suite fails on exactly the test that checks the key.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from brokerline.core import Broker, Envelope, MessageContext
from brokerline.memory.broker import MemoryBroker, MemoryHub
from brokerline.testing import (
    BrokerConformance,
    BrokerFactory,
    connected_brokers,
    eventually,
    unique,
)

pytest_plugins = ["pytester"]

RELAY_HEADER = "x-relayed-by"


class RelayBroker(MemoryBroker):
    """An in-memory broker that stamps each message with the node that relayed it."""

    type_name = "relay"

    def __init__(self, hub: MemoryHub, node: str) -> None:
        super().__init__(hub)
        self.node = node

    async def _send(self, envelope: Envelope) -> None:
        envelope.headers.setdefault(RELAY_HEADER, self.node)
        await super()._send(envelope)


class TestRelayBroker(BrokerConformance):
    @pytest_asyncio.fixture
    async def broker_factory(self) -> AsyncIterator[BrokerFactory]:
        hub = MemoryHub()  # the "server" every broker of one test reaches
        async with connected_brokers(lambda: RelayBroker(hub, node="relay-1")) as connect:
            yield connect

    async def test_the_suite_runs_on_this_plugin(self, broker: Broker) -> None:
        """`broker` (the pytest plugin's) comes from this class's factory: a RelayBroker."""
        assert isinstance(broker, RelayBroker) and broker.type_name == "relay"
        topic, seen = unique("relay"), []

        async def handler(msg: bytes, ctx: MessageContext) -> None:
            seen.append(ctx.headers.get(RELAY_HEADER))

        await broker.subscribe(topic, handler, group=unique("g"))
        await broker.publish(topic, b"x")
        await eventually(lambda: seen == ["relay-1"])


BROKEN_PLUGIN_PROJECT = '''
from collections.abc import AsyncIterator

import pytest_asyncio

from brokerline.core import Envelope
from brokerline.memory.broker import MemoryBroker, MemoryHub
from brokerline.testing import BrokerConformance, BrokerFactory, connected_brokers


class KeylessBroker(MemoryBroker):
    """Loses every message's key on the way: a plugin with a bug."""

    type_name = "keyless"

    async def _send(self, envelope: Envelope) -> None:
        envelope.key = None
        await super()._send(envelope)


class TestKeylessBroker(BrokerConformance):
    @pytest_asyncio.fixture
    async def broker_factory(self) -> AsyncIterator[BrokerFactory]:
        hub = MemoryHub()
        async with connected_brokers(lambda: KeylessBroker(hub)) as connect:
            yield connect
'''


def test_the_suite_fails_a_plugin_that_loses_message_keys(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_keyless=BROKEN_PLUGIN_PROJECT)
    # strict mode (pytest-asyncio's default): the suite must not rely on a project's auto mode
    pytester.makeini("[pytest]\nasyncio_mode = strict\n")
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-k", "key_and_headers or bytes_round_trip or dead_lettered",
        timeout=120,
    )
    outcomes = result.parseoutcomes()
    # the key checks fail: delivery (key_and_headers) and the dead letter's key (max_deliveries)
    assert outcomes.get("failed") == 2, result.stdout.str()
    result.stdout.fnmatch_lines([
        "FAILED *TestKeylessBroker::test_key_and_headers_preserved*",
        "FAILED *TestKeylessBroker::test_after_max_deliveries_message_is_dead_lettered*",
    ])
    assert outcomes.get("passed", 0) >= 2  # what does not depend on the key still passes
