"""brokerline's pytest plugin (loaded by the `pytest11` entry point when brokerline is installed).

Fixtures that connect brokers of every installed type to real local broker processes
(nats-server, pulsar-lite) started once per test session on free loopback ports:

- `broker_type`: parametrized over the installed broker types (test ids name the broker
  process: `memory`, `nats`, `jetstream`, `pulsar-lite`);
- `broker_factory` / `broker`: connected brokers of that type, closed after the test (a test
  class that defines its own `broker_factory`, as a `BrokerConformance` subclass for a plugin
  of your own does, gets `broker` from it);
- `embedded_servers`: the session's broker processes, by kind;
- `module_nats_server`: a nats-server with JetStream of the test module's own, for tests
  that make streams (the session's one has the conformance suite's catch-all `*` stream);
- `pulsar_server`, `pulsar_factory`: the session's pulsar-lite, and Pulsar brokers on it;
- `postgres_server`: a private PostgreSQL server for one test (skips without the binaries).

The async fixtures are `pytest_asyncio` fixtures: they work in its strict mode and auto mode.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
import pytest_asyncio

from brokerline.core import Broker
from brokerline.core.embedded import EmbeddedBroker, start_embedded
from brokerline.memory.broker import MemoryHub
from brokerline.testing.brokers import (
    BROKER_TYPES,
    SERVER_KIND,
    BrokerFactory,
    connected_brokers,
    make_broker,
)
from brokerline.testing.postgres import PostgresServer, require_server_binaries

if TYPE_CHECKING:
    from brokerline.pulsar.broker import PulsarBroker


@pytest.fixture(scope="session")
def embedded_servers() -> Iterator[dict[str, EmbeddedBroker]]:
    """Embedded broker servers, started on first use and stopped at the end of the session."""
    servers: dict[str, EmbeddedBroker] = {}
    yield servers
    for server in servers.values():
        server.cleanup()


@pytest.fixture(scope="module")
def module_nats_server() -> Iterator[EmbeddedBroker]:
    """A nats-server with JetStream for the tests of one module, started; stopped after them."""
    from brokerline.nats.embedded import nats_server

    with nats_server(jetstream=True) as server:
        yield server.start()


@pytest.fixture
def postgres_server() -> Iterator[PostgresServer]:
    """A private PostgreSQL server for one test, started (it may stop and restart it)."""
    server = PostgresServer(require_server_binaries()).start()
    yield server
    server.cleanup()


def server_for(type_name: str, servers: dict[str, EmbeddedBroker]) -> EmbeddedBroker | None:
    kind = SERVER_KIND.get(type_name)
    if kind is None:
        return None
    if kind not in servers:
        servers[kind] = start_embedded(kind)
    return servers[kind]


@pytest.fixture(params=BROKER_TYPES)
def broker_type(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest_asyncio.fixture
async def broker_factory(
    broker_type: str, embedded_servers: dict[str, EmbeddedBroker]
) -> AsyncIterator[BrokerFactory]:
    """Connects new brokers of the parametrized type; closes them all after the test."""
    server = server_for(broker_type, embedded_servers) or MemoryHub()
    async with connected_brokers(lambda: make_broker(broker_type, server)) as connect:
        yield connect


@pytest_asyncio.fixture
async def broker(broker_factory: BrokerFactory) -> Broker:
    return await broker_factory()


@pytest.fixture
def pulsar_server(embedded_servers: dict[str, EmbeddedBroker]) -> EmbeddedBroker:
    """The session's pulsar-lite process (started on first use)."""
    server = server_for("pulsar", embedded_servers)
    assert server is not None
    return server


@pytest_asyncio.fixture
async def pulsar_factory(
    pulsar_server: EmbeddedBroker,
) -> AsyncIterator[Callable[..., Awaitable[PulsarBroker]]]:
    """Connects Pulsar brokers to the session's pulsar-lite, with settings overrides.

    `await pulsar_factory(retry_letter_topic=True)`; every broker is closed after the test.
    """
    from brokerline.pulsar.broker import PulsarBroker
    from brokerline.pulsar.settings import PulsarSettings

    def make(**overrides: Any) -> PulsarBroker:
        fields: dict[str, Any] = {
            "service_urls": [pulsar_server.url], "operation_timeout": 5, "connection_timeout": 2,
        }
        fields.update(overrides)
        return PulsarBroker(PulsarSettings.model_validate(fields))

    async with connected_brokers(make) as connect:
        yield connect


#: test ids name the broker process a test ran on, not only the plugin: the Pulsar plugin's
#: tests run on the embedded pulsar-lite
BROKER_TEST_IDS = {"pulsar": "pulsar-lite"}


def pytest_make_parametrize_id(config: pytest.Config, val: object, argname: str) -> str | None:
    return BROKER_TEST_IDS.get(val) if isinstance(val, str) else None
