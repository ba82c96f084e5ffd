"""How the tests get a connected broker of each included type.

Real brokers run as real processes (nats-server, pulsar-lite, Apache Pulsar standalone)
started once per test session on free loopback ports; the memory broker needs nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, NoReturn, ParamSpec, TypeVar

import pytest

from brokerline.core import Backoff, Broker, MessageContext, known_types
from brokerline.core.embedded import EmbeddedBroker
from brokerline.memory.broker import MemoryBroker, MemoryHub
from brokerline.nats.settings import NatsSettings

if TYPE_CHECKING:
    from brokerline.kafka.settings import KafkaSettings

#: what a `broker_factory` fixture yields: each call returns a new, connected broker
BrokerFactory = Callable[[], Awaitable[Broker]]

P = ParamSpec("P")
B = TypeVar("B", bound=Broker)

#: the Pulsar plugin's tests run on both: pulsar-lite (embedded, fast) and Apache Pulsar
APACHE_PULSAR = "apache-pulsar"
#: the key of the session's Apache Kafka node in `embedded_servers`
APACHE_KAFKA = "apache-kafka"

#: broker types whose client library is installed, the conformance suite runs on each; Pulsar
#: twice (`pulsar` on pulsar-lite, `apache-pulsar` on Apache Pulsar standalone)
BROKER_TYPES = known_types() + ([APACHE_PULSAR] if "pulsar" in known_types() else [])

#: which embedded server each broker type needs (None: no server)
SERVER_KIND: dict[str, str | None] = {
    "memory": None,
    "nats": "nats",
    "jetstream": "nats",
    "pulsar": "pulsar",
    APACHE_PULSAR: None,  # the plugin's `apache_pulsar_server` session fixture
    "kafka": None,  # the plugin's `apache_kafka_server` session fixture (Apache Kafka)
}


def make_broker(type_name: str, server: EmbeddedBroker | MemoryHub | None) -> Broker:
    """A new, not yet connected broker of `type_name` pointed at `server`.

    For the memory broker the "server" is a hub that the test's connections share.
    """
    if type_name == "memory":
        assert isinstance(server, MemoryHub)
        return MemoryBroker(server)
    if type_name in ("pulsar", APACHE_PULSAR):
        from brokerline.pulsar.broker import PulsarBroker
        from brokerline.pulsar.settings import PulsarSettings

        assert isinstance(server, EmbeddedBroker)
        # short timeouts: a test that provokes a failure should not wait the 30 s default
        return PulsarBroker(
            PulsarSettings(service_urls=[server.url], operation_timeout=5, connection_timeout=2)
        )
    if type_name == "kafka":
        from brokerline.kafka.broker import KafkaBroker

        assert isinstance(server, EmbeddedBroker)
        return KafkaBroker(kafka_test_settings(server.url))
    if type_name in ("nats", "jetstream"):
        from brokerline.core.registry import plugin_factory

        assert isinstance(server, EmbeddedBroker)
        return plugin_factory(type_name)(settings=nats_test_settings(server.url))
    raise AssertionError(f"no test factory for broker type {type_name!r}")


@contextlib.asynccontextmanager
async def connected_brokers(
    make: Callable[P, B], close_timeout: float = 5.0
) -> AsyncIterator[Callable[P, Awaitable[B]]]:
    """A factory of connected brokers for one test: each call builds a broker with
    `make(...)` (the call's arguments go to it) and connects it; on exit every broker it
    made is closed, newest first."""
    made: list[Broker] = []

    async def connect(*args: P.args, **kwargs: P.kwargs) -> B:
        broker = make(*args, **kwargs)
        await broker.connect()
        made.append(broker)
        return broker

    try:
        yield connect
    finally:
        for broker in reversed(made):
            await broker.close(timeout=close_timeout)


def nats_test_settings(url: str, **overrides: Any) -> NatsSettings:
    """NATS settings for tests: the app's stream (so a service started by a test finds it
    compatible), also capturing the one-token topics of the conformance suite."""
    fields: dict[str, Any] = {
        "servers": [url],
        "connect_timeout": 3,
        "stream": {"name": "EVENTS", "subjects": ["events.>", "*"]},
    }
    fields.update(overrides)
    return NatsSettings.model_validate(fields)


def kafka_test_settings(bootstrap: str, **overrides: Any) -> KafkaSettings:
    """Kafka settings for tests: short timeouts, frequent commits, 3 partitions a topic."""
    from brokerline.kafka.settings import KafkaSettings

    fields: dict[str, Any] = {
        "bootstrap_servers": [bootstrap], "request_timeout": 10, "session_timeout": 6,
        "heartbeat_interval": 0.5, "rebalance_timeout": 10, "commit_interval": 0.05,
    }
    fields.update(overrides)
    return KafkaSettings.model_validate(fields)


def in_ci() -> bool:
    """True where CI=true: there a test that cannot run is an error, never a quiet skip."""
    return os.environ.get("CI", "").strip().lower() == "true"


def cannot_run(reason: str, ci_needs: str = "") -> NoReturn:
    """Skip the test with `reason` (what to install); under CI=true fail it instead, so CI
    cannot go green without it (`ci_needs`, if given, says why CI needs it)."""
    if in_ci():
        pytest.fail(f"{reason} ({ci_needs})" if ci_needs else reason, pytrace=False)
    pytest.skip(reason)


#: a quick backoff for tests that wait for redeliveries
FAST = Backoff(initial=0.05, multiplier=2.0, maximum=0.5)


async def collect_dead_letters(broker: Broker, dlq: str) -> list[tuple[bytes, MessageContext]]:
    """Subscribe to the dead-letter topic `dlq`; the list fills with (payload, context)."""
    dead: list[tuple[bytes, MessageContext]] = []

    async def on_dead(msg: bytes, ctx: MessageContext) -> None:
        dead.append((msg, ctx))

    await broker.subscribe(dlq, on_dead, group=unique("dlq-reader"))
    return dead


def unique(name: str) -> str:
    """A topic or group name no other test uses (so tests can share one server)."""
    return f"{name}-{uuid.uuid4().hex[:10]}"


async def eventually(
    predicate: Callable[[], bool | Awaitable[bool]], timeout: float = 10.0, interval: float = 0.02
) -> None:
    """Wait until `predicate()` holds; fail with a clear message after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


def pulsar_lite_lacks(server: EmbeddedBroker, reason: str) -> NoReturn:
    """Skip a test on pulsar-lite, which lacks what it needs (`reason`); on Apache Pulsar,
    which has it, the same outcome is a failure, so the skip cannot hide a regression."""
    if server.kind == APACHE_PULSAR:
        pytest.fail(f"on Apache Pulsar, which should not lack it: {reason}", pytrace=False)
    pytest.skip(reason)
