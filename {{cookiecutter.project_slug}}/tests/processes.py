"""The sample pair as real processes, for the reliability and end-to-end tests.

A test starts a broker (or takes the session's Apache Pulsar, in a namespace of its own, or
the session's Apache Kafka, with topics and a group of its own),
`serve saver` / `serve report` as child processes pointed at it (by the same environment names
a deployment uses), posts reports over gRPC and reads the rows back from the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
from brokerline.config import DatabaseConfig
from brokerline.core import Broker
from brokerline.core.embedded import EmbeddedBroker, free_port
from brokerline.core.errors import BrokerError
from brokerline.sql.database import create_engine
from brokerline.testing.brokers import APACHE_PULSAR, make_broker, unique
from sqlalchemy import select

from {{ cookiecutter.package_name }}.api.report.v1 import report_pb2, report_pb2_grpc
from {{ cookiecutter.package_name }}.data.models import RealtimeWarehousing

from .service_process import Service

if TYPE_CHECKING:
    from brokerline.testing.apache_pulsar import ApachePulsarServer

ENV_PREFIX = "{{ cookiecutter.package_name.upper() }}__"
#: the service's topics are the same in every test: on a shared Apache Pulsar each test's
#: services and clients use a namespace of its own
PULSAR_NAMESPACE_ENV = f"{ENV_PREFIX}BROKER__PULSAR__NAMESPACE"
REPORT_TOPIC = "events.realtime-warehousing"
USER_REPORT_TOPIC = "events.user-report"  # the status events' topic (the config's default)


@dataclass
class Pair:
    """A broker with report and saver services around it."""

    broker_type: str  # the plugin the services use: jetstream, pulsar or kafka
    broker: EmbeddedBroker
    workdir: Path
    pulsar_namespace: str = "default"  # in the tenant `public`
    #: the services' report topic and group; on the shared Apache Kafka, a test's own
    report_topic: str = REPORT_TOPIC
    group: str = "saver"
    db_url: str = ""
    grpc_address: str = ""
    http_address: str = ""
    services: dict[str, Service] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.db_url = self.db_url or f"sqlite+aiosqlite:///{self.workdir / 'saver.db'}"
        self.grpc_address = f"127.0.0.1:{free_port()}"
        self.http_address = f"127.0.0.1:{free_port()}"

    @property
    def status_topic(self) -> str:
        """The status events' topic: the default, or on Kafka the test's own beside its report
        topic."""
        return f"{self.report_topic}-user-report" if self.broker_type == "kafka" else (
            USER_REPORT_TOPIC
        )

    def env(self, **extra: str) -> dict[str, str]:
        on_pulsar = self.broker_type == "pulsar"
        pulsar = {PULSAR_NAMESPACE_ENV: self.pulsar_namespace} if on_pulsar else {}
        own_names = {
            f"{ENV_PREFIX}TOPICS__REPORT": self.report_topic,
            f"{ENV_PREFIX}TOPICS__USER_REPORT": self.status_topic,
            f"{ENV_PREFIX}BROKER__GROUP": self.group,
            # a killed saver's partitions go to its successor once the group drops it
            f"{ENV_PREFIX}BROKER__KAFKA__SESSION_TIMEOUT": "6",
            f"{ENV_PREFIX}BROKER__KAFKA__HEARTBEAT_INTERVAL": "0.5",
        } if self.broker_type == "kafka" else {}
        return {
            **os.environ,
            "BROKER_TYPE": self.broker_type,
            "BROKER_ADDRESS": self.broker.url,
            "DATABASE_URL": self.db_url,
            "GRPC_ADDRESS": self.grpc_address,
            "HTTP_ADDRESS": self.http_address,
            "LOG_LEVEL": "INFO",
            **pulsar,
            **own_names,
            **extra,
        }

    def client(self) -> Broker:
        """A broker client of the test's own (not yet connected), on the services' topics."""
        if self.broker_type == "jetstream":  # the services' stream settings: it finds theirs
            from brokerline.jetstream.broker import JetStreamBroker
            from brokerline.nats.settings import NatsSettings

            return JetStreamBroker(NatsSettings(servers=[self.broker.url]))
        if self.broker_type != "pulsar":
            return make_broker(self.broker_type, self.broker)
        from brokerline.pulsar.broker import PulsarBroker
        from brokerline.pulsar.settings import PulsarSettings

        return PulsarBroker(PulsarSettings(
            service_urls=[self.broker.url], namespace=self.pulsar_namespace, operation_timeout=15,
        ))

    def start(self, role: str, **extra_env: str) -> Service:
        """Start `serve <role>` and wait until it started: a test that stops the broker right
        after must not catch the saver still subscribing."""
        service = Service(role, self.env(**extra_env), self.workdir).start()
        self.services[role] = service
        return service.wait_started()

    def stop_all(self) -> None:
        for service in self.services.values():
            if service.alive():
                try:
                    service.terminate(30)
                except subprocess.TimeoutExpired:
                    service.kill()


@contextlib.contextmanager
def running_pair(
    broker: str,
    request: pytest.FixtureRequest,
    workdir: Path,
    private: bool = False,
    db_url: str = "",
) -> Iterator[Pair]:
    """A Pair on `broker`: `jetstream`, `pulsar` (pulsar-lite), `apache-pulsar` or `kafka`
    (Apache Kafka), its saver on `db_url` (default: an SQLite file in `workdir`).

    jetstream and pulsar-lite start a broker of the test's own; Apache Pulsar is the
    session's JVM (10-30 s to start) with a fresh namespace, and Apache Kafka the session's
    KRaft node with topics of the test's own, unless `private` (a test that stops and
    restarts the broker gets a JVM of its own). Stops everything it started.
    """
    own: EmbeddedBroker | None = None
    pair: Pair | None = None
    try:
        if broker == APACHE_PULSAR:
            server: ApachePulsarServer = request.getfixturevalue("apache_pulsar_server")  # or skips
            if private:
                server = own = _private_apache_pulsar(workdir / "broker")
            namespace = new_namespace(server)
            pair = Pair("pulsar", server, workdir, pulsar_namespace=namespace, db_url=db_url)
        elif broker == "kafka":  # the session's Apache Kafka (or skips): topics of the test's own
            kafka: EmbeddedBroker = request.getfixturevalue("apache_kafka_server")
            if private:  # a KRaft node of the test's own, to stop and start
                kafka = own = _private_apache_kafka(workdir / "broker")
            pair = Pair("kafka", kafka, workdir, db_url=db_url,
                        report_topic=unique(REPORT_TOPIC), group=unique("saver"))
        else:
            from brokerline.nats.embedded import nats_server
            from brokerline.pulsar.embedded import pulsar_lite

            own = (pulsar_lite if broker == "pulsar" else nats_server)(store=workdir / "broker")
            pair = Pair(broker, own.start(), workdir, db_url=db_url)
        yield pair
    finally:
        if pair is not None:
            pair.stop_all()
        if own is not None:
            own.cleanup()


def _private_apache_kafka(store: Path) -> EmbeddedBroker:
    """A KRaft node with its log directory in `store` (no TLS listener: not needed here);
    `stop()` then `start()` brings it back on the same port with the same log."""
    from brokerline.testing.apache_kafka import apache_kafka_kraft

    try:
        return apache_kafka_kraft(store=store, tls=False).start()
    except BrokerError as exc:
        pytest.fail(f"Apache Kafka did not start: {exc}", pytrace=False)


def _private_apache_pulsar(store: Path) -> ApachePulsarServer:
    from brokerline.testing.apache_pulsar import apache_pulsar_standalone

    try:
        return apache_pulsar_standalone(store=store).start()
    except BrokerError as exc:
        pytest.fail(f"Apache Pulsar standalone did not start: {exc}", pytrace=False)


def new_namespace(server: ApachePulsarServer) -> str:
    """A new namespace in `public` on an Apache Pulsar, its report topic created (so the
    namespace's bundle is loaded before the services' first lookups, which time out sooner)."""
    from brokerline.testing.apache_pulsar.admin import admin

    namespace = unique("reports")
    # one bundle (standalone's default is 4): loading it loads every topic's
    admin(server, "PUT", f"namespaces/public/{namespace}", {"bundles": {"numBundles": 1}})
    admin(server, "PUT", f"persistent/public/{namespace}/{REPORT_TOPIC}")
    return namespace


@dataclass
class PostResult:
    accepted: list[str] = field(default_factory=list)  # event ids answered OK
    refused: Counter[str] = field(default_factory=Counter)  # status code -> count
    contents: dict[str, str] = field(default_factory=dict)  # event id -> its report's content
    #: every content starts with it (and is unique): a log line holding it leaks a report
    tag: str = field(default_factory=lambda: f"report-content-{uuid.uuid4().hex[:8]}")


async def post_reports(
    target: str, count: int, concurrency: int = 32, pause: float = 0.0
) -> PostResult:
    """Post `count` reports (no retries: each call's answer is what the test counts)."""
    result = PostResult()
    numbers = iter(range(count))
    async with grpc.aio.insecure_channel(target) as channel:
        await asyncio.wait_for(channel.channel_ready(), 30)
        stub = report_pb2_grpc.ReportServiceStub(channel)

        async def worker() -> None:
            for n in numbers:
                request = report_pb2.PostReportRequest(
                    user_id=f"user-{n % 97}", event_name="test", content=f"{result.tag}-{n}"
                )
                try:
                    reply = await stub.PostReport(request, timeout=30)
                    result.accepted.append(reply.event_id)
                    result.contents[reply.event_id] = request.content
                except grpc.aio.AioRpcError as exc:
                    result.refused[exc.code().name] += 1
                if pause:
                    await asyncio.sleep(pause)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return result


async def stored_event_ids(db_url: str) -> list[str]:
    engine = create_engine(DatabaseConfig(url=db_url))
    try:
        async with engine.connect() as conn:
            try:
                return list((await conn.scalars(select(RealtimeWarehousing.event_id))).all())
            except Exception:  # the saver has not created the table yet
                return []
    finally:
        await engine.dispose()


async def wait_for_rows(db_url: str, expected: int, timeout: float) -> list[str]:
    """The stored event ids once there are `expected` of them (or at the timeout)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        ids = await stored_event_ids(db_url)
        if len(ids) >= expected or loop.time() > deadline:
            return ids
        await asyncio.sleep(0.5)
