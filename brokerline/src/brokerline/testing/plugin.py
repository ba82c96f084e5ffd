"""brokerline's pytest plugin (loaded by the `pytest11` entry point when brokerline is installed).

Fixtures that connect brokers of every installed type to real local broker processes
(nats-server, pulsar-lite, Apache Pulsar standalone, Apache Kafka) started once per test
session on free loopback ports:

- `broker_type`: parametrized over the installed broker types (test ids name the broker
  process: `memory`, `nats`, `jetstream`, `pulsar-lite`, `apache-pulsar`, `kafka`);
- `broker_factory` / `broker`: connected brokers of that type, closed after the test (a test
  class that defines its own `broker_factory`, as a `BrokerConformance` subclass for a plugin
  of your own does, gets `broker` from it);
- `embedded_servers`: the session's broker processes, by kind;
- `module_nats_server`: a nats-server with JetStream of the test module's own, for tests
  that make streams (the session's one has the conformance suite's catch-all `*` stream);
- `pulsar_server`, `pulsar_factory`: parametrized over the session's pulsar-lite and Apache
  Pulsar (ids `pulsar-lite`, `apache-pulsar`), and Pulsar brokers on it;
- `apache_pulsar_server`: the session's Apache Pulsar standalone (`.url`, `.admin_url`); it
  needs Java 17 and Maven: without them its tests skip saying so, and fail when CI=true;
- `apache_kafka_server`: the session's Apache Kafka KRaft node (`.url`, `.sasl_url`,
  `.ssl_url`), behind the `kafka` broker type's tests; like Apache Pulsar it needs Java 17
  and Maven, skips without them and fails when CI=true; `kafka_factory`: Kafka brokers on
  it, with settings overrides;
- `postgres_server`: a private PostgreSQL server for one test (skips without the binaries).

The async fixtures are `pytest_asyncio` fixtures: they work in its strict mode and auto mode.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
import pytest_asyncio

from brokerline.core import Broker
from brokerline.core.embedded import EmbeddedBroker, start_embedded
from brokerline.core.errors import BrokerError
from brokerline.memory.broker import MemoryHub
from brokerline.testing.brokers import (
    APACHE_KAFKA,
    APACHE_PULSAR,
    BROKER_TYPES,
    SERVER_KIND,
    BrokerFactory,
    cannot_run,
    connected_brokers,
    kafka_test_settings,
    make_broker,
)
from brokerline.testing.jvm import JvmBroker
from brokerline.testing.postgres import PostgresServer, require_server_binaries

if TYPE_CHECKING:
    from brokerline.kafka.broker import KafkaBroker
    from brokerline.pulsar.broker import PulsarBroker
    from brokerline.testing.apache_kafka import ApacheKafkaServer
    from brokerline.testing.apache_pulsar import ApachePulsarServer

J = TypeVar("J", bound=JvmBroker)


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


def start_jvm_broker(
    config: pytest.Config, title: str, missing: str | None, make: Callable[[], J],
    where: Callable[[J], str], prepared: str = "jars resolved",
) -> J:
    """A JVM broker (Apache Pulsar, Apache Kafka) made by `make()` and started, its cost
    reported at the end of the test log; skips (fails in CI) when Java or Maven is
    `missing`."""
    if missing is not None:
        cannot_run(missing, f"CI must run the {title} tests")
    try:
        began = time.monotonic()
        server = make()
        prepared_in = time.monotonic() - began
        server.start()
    except BrokerError as exc:
        pytest.fail(f"{title} did not start: {exc}", pytrace=False)
    rss = server.rss_mb()
    report(
        config,
        f"brokerline: {title} {server.version} {where(server)}: {prepared} in "
        f"{prepared_in:.1f}s, started in {server.started_in or 0:.1f}s, RSS "
        f"{'?' if rss is None else f'{rss:.0f} MiB'}"
    )
    return server


def start_apache_pulsar(config: pytest.Config) -> ApachePulsarServer:
    """Apache Pulsar standalone, started; skips (fails in CI) without Java and Maven."""
    from brokerline.testing.apache_pulsar import apache_pulsar_standalone, missing_tools

    return start_jvm_broker(
        config, "Apache Pulsar", missing_tools(), apache_pulsar_standalone,
        lambda server: f"standalone on {server.url} (admin {server.admin_url})",
    )


def start_apache_kafka(config: pytest.Config) -> ApacheKafkaServer:
    """An Apache Kafka KRaft node, started; skips (fails in CI) without Java and Maven."""
    from brokerline.testing.apache_kafka import apache_kafka_kraft, missing_tools

    return start_jvm_broker(
        config, "Apache Kafka", missing_tools(), apache_kafka_kraft,
        lambda server: (
            f"KRaft node on {server.url} (SASL {server.sasl_url}, TLS "
            f"{server.ssl_url if server.ssl_port else 'off'})"
        ),
        "jars resolved and storage formatted",
    )


#: lines for the end of the test log (start-up costs), whatever the capture mode
SESSION_NOTES = pytest.StashKey[list[str]]()


def report(config: pytest.Config, line: str) -> None:
    config.stash.setdefault(SESSION_NOTES, []).append(line)


def pytest_terminal_summary(
    terminalreporter: Any, exitstatus: int, config: pytest.Config
) -> None:
    for line in config.stash.get(SESSION_NOTES, []):
        terminalreporter.write_line(line)


@pytest.fixture(params=BROKER_TYPES)
def broker_type(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def apache_pulsar_server(
    pytestconfig: pytest.Config, embedded_servers: dict[str, EmbeddedBroker]
) -> ApachePulsarServer:
    """The session's Apache Pulsar standalone (started on first use; Java 17 and Maven).

    A session fixture, so a skip or a failed start is raised once and then reused.
    """
    server = start_apache_pulsar(pytestconfig)
    embedded_servers[APACHE_PULSAR] = server  # stopped with the others at the session's end
    return server


@pytest.fixture(scope="session")
def apache_kafka_server(
    pytestconfig: pytest.Config, embedded_servers: dict[str, EmbeddedBroker]
) -> ApacheKafkaServer:
    """The session's Apache Kafka KRaft node (started on first use; Java 17 and Maven).

    `.url` is its PLAINTEXT bootstrap address, `.sasl_url` SASL/PLAIN, `.ssl_url` TLS.
    """
    server = start_apache_kafka(pytestconfig)
    embedded_servers[APACHE_KAFKA] = server  # stopped with the others at the session's end
    return server


@pytest_asyncio.fixture
async def broker_factory(
    request: pytest.FixtureRequest, broker_type: str, embedded_servers: dict[str, EmbeddedBroker]
) -> AsyncIterator[BrokerFactory]:
    """Connects new brokers of the parametrized type; closes them all after the test."""
    server: EmbeddedBroker | MemoryHub
    if broker_type == APACHE_PULSAR:
        server = request.getfixturevalue("apache_pulsar_server")
    elif broker_type == "kafka":
        server = request.getfixturevalue("apache_kafka_server")
    else:
        server = server_for(broker_type, embedded_servers) or MemoryHub()
    async with connected_brokers(lambda: make_broker(broker_type, server)) as connect:
        yield connect


@pytest_asyncio.fixture
async def broker(broker_factory: BrokerFactory) -> Broker:
    return await broker_factory()


@pytest.fixture(params=["pulsar", APACHE_PULSAR])
def pulsar_server(
    request: pytest.FixtureRequest, embedded_servers: dict[str, EmbeddedBroker]
) -> EmbeddedBroker:
    """The session's pulsar-lite, then its Apache Pulsar (each started on first use)."""
    if request.param == APACHE_PULSAR:
        return request.getfixturevalue("apache_pulsar_server")  # type: ignore[no-any-return]
    server = server_for("pulsar", embedded_servers)
    assert server is not None
    return server


@pytest_asyncio.fixture
async def pulsar_factory(
    pulsar_server: EmbeddedBroker,
) -> AsyncIterator[Callable[..., Awaitable[PulsarBroker]]]:
    """Connects Pulsar brokers to the session's pulsar-lite or Apache Pulsar, with overrides.

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


@pytest_asyncio.fixture
async def kafka_factory(
    apache_kafka_server: ApacheKafkaServer,
) -> AsyncIterator[Callable[..., Awaitable[KafkaBroker]]]:
    """Connects Kafka brokers to the session's Apache Kafka, with settings overrides.

    `await kafka_factory(topic_partitions=1)`; every broker is closed after the test.
    """
    from brokerline.kafka.broker import KafkaBroker

    def make(**overrides: Any) -> KafkaBroker:
        return KafkaBroker(kafka_test_settings(apache_kafka_server.url, **overrides))

    async with connected_brokers(make) as connect:
        yield connect


#: test ids name the broker process a test ran on, not only the plugin: the Pulsar plugin's
#: tests run on the embedded pulsar-lite (`pulsar`) and on Apache Pulsar (`apache-pulsar`)
BROKER_TEST_IDS = {"pulsar": "pulsar-lite"}


def pytest_make_parametrize_id(config: pytest.Config, val: object, argname: str) -> str | None:
    return BROKER_TEST_IDS.get(val) if isinstance(val, str) else None
