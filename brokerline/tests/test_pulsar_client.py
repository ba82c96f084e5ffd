"""Pulsar client features (addresses, timeouts, JWT, TLS, shutdown) against real brokers:
pulsar-lite and Apache Pulsar (JWT with authentication on: test_apache_pulsar_auth.py; mutual
TLS: test_apache_pulsar_tls.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pulsar
import pytest
from pydantic import ValidationError

from brokerline.core import (
    BrokerError,
    BrokerUnavailable,
    MessageContext,
)
from brokerline.core.embedded import EmbeddedBroker, free_port
from brokerline.core.settings import TLSSettings
from brokerline.pulsar.broker import PulsarBroker
from brokerline.pulsar.client import client_logger
from brokerline.pulsar.pattern import pattern_configuration
from brokerline.pulsar.settings import PulsarSettings
from brokerline.testing.apache_pulsar import ApachePulsarServer
from brokerline.testing.brokers import cannot_run, eventually, pulsar_lite_lacks, unique
from brokerline.testing.tls import make_test_certificates, missing_openssl

Factory = Callable[..., Awaitable[PulsarBroker]]

TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJyZXBvcnQtc2VydmljZSJ9.c2VjcmV0LXNpZ25hdHVyZQ"


def dead_url() -> str:
    return f"pulsar://127.0.0.1:{free_port()}"


async def round_trip(broker: PulsarBroker) -> None:
    topic = unique("rt")
    got: list[bytes] = []

    async def handler(msg: bytes, ctx: MessageContext) -> None:
        got.append(msg)

    await broker.subscribe(topic, handler, group=unique("g"))
    await broker.publish(topic, b"ping")
    await eventually(lambda: got == [b"ping"])


async def test_several_service_urls_fail_over_to_a_live_broker(
    pulsar_factory: Factory, pulsar_server: EmbeddedBroker
) -> None:
    live = pulsar_server.url
    broker = await pulsar_factory(service_urls=[dead_url(), live], operation_timeout=10)
    await round_trip(broker)


async def test_comma_separated_hosts_are_one_service_url(
    pulsar_factory: Factory, pulsar_server: EmbeddedBroker
) -> None:
    live = pulsar_server.url.removeprefix("pulsar://")
    broker = await pulsar_factory(service_urls=[f"pulsar://{live},{live}"])
    assert broker.url == f"pulsar://{live},{live}"
    await round_trip(broker)


async def test_an_unreachable_broker_fails_within_the_operation_timeout() -> None:
    broker = PulsarBroker(
        PulsarSettings(service_urls=[dead_url()], operation_timeout=2, connection_timeout=0.5)
    )
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable, match=r"could not reach Pulsar .* check MQ_NAME_SERVER"):
        await broker.connect()
    assert time.monotonic() - started < 10
    assert not await broker.healthy()


@pytest.mark.parametrize(
    ("urls", "message"),
    [
        ([], "no Pulsar service URL is configured; set MQ_NAME_SERVER"),
        # refused when the settings are made (at config load), before any broker exists
        (["http://127.0.0.1:8080"], "is not a Pulsar URL; write it as pulsar://host:6650"),
        (["pulsar://a:6650", "pulsar+ssl://b:6651"], "mix pulsar:// and pulsar\\+ssl://"),
    ],
)
async def test_bad_service_urls_are_clear_errors(urls: list[str], message: str) -> None:
    with pytest.raises((BrokerError, ValidationError), match=message):
        await PulsarBroker(PulsarSettings(service_urls=urls)).connect()


async def test_jwt_token_is_used_and_only_its_length_is_logged(
    pulsar_factory: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    broker = await pulsar_factory(jwt_token=TOKEN)
    await round_trip(broker)
    await broker.close(timeout=5)
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert f"token length {len(TOKEN)}" in text
    assert TOKEN not in text and TOKEN[-20:] not in text
    assert TOKEN not in repr(broker.settings)


async def test_tls_trust_file_must_exist(tmp_path: Path) -> None:
    settings = PulsarSettings(
        service_urls=["pulsar+ssl://127.0.0.1:6651"],
        tls=TLSSettings(ca_file=str(tmp_path / "missing-ca.pem")),
    )
    with pytest.raises(BrokerError, match=r"TLS ca_file .*missing-ca.pem' does not exist"):
        await PulsarBroker(settings).connect()


async def test_tls_to_a_plaintext_listener_is_unavailable_in_bounded_time(
    pulsar_server: EmbeddedBroker, tmp_path: Path
) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
    port = pulsar_server.port
    broker = PulsarBroker(
        PulsarSettings(
            service_urls=[f"pulsar+ssl://127.0.0.1:{port}"], tls=TLSSettings(ca_file=str(ca)),
            operation_timeout=2, connection_timeout=1,
        )
    )
    started = time.monotonic()
    with pytest.raises(BrokerError, match=r"could not reach Pulsar|TLS"):
        await broker.connect()
    assert time.monotonic() - started < 10


@contextlib.asynccontextmanager
async def tls_terminator(cert: Path, key: str | Path, upstream_port: int) -> AsyncIterator[int]:
    """A TLS listener in front of pulsar-lite (the way a TLS Pulsar proxy fronts brokers)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream_port)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    port = free_port()
    server = await asyncio.start_server(relay, "127.0.0.1", port, ssl=context)
    try:
        yield port
    finally:
        server.close()


@contextlib.asynccontextmanager
async def tls_endpoint(server: EmbeddedBroker, tmp_path: Path) -> AsyncIterator[tuple[str, Path]]:
    """A pulsar+ssl:// URL of `server` and the CA that signed its certificate: Apache Pulsar's
    own TLS port, or a TLS terminator in front of pulsar-lite (which has no TLS listener)."""
    missing = missing_openssl()
    if missing is not None:
        cannot_run(missing, "CI must run the TLS tests")
    if isinstance(server, ApachePulsarServer):
        assert server.certificates is not None, "the session's Apache Pulsar has no TLS"
        yield server.tls_url, server.certificates.ca
        return
    files = make_test_certificates(tmp_path / "broker")
    async with tls_terminator(files.server_cert, files.server_key, server.port) as port:
        yield f"pulsar+ssl://127.0.0.1:{port}", files.ca


async def test_tls_with_a_trust_file(pulsar_server: EmbeddedBroker, tmp_path: Path) -> None:
    async with tls_endpoint(pulsar_server, tmp_path) as (url, ca):
        def settings(ca_file: Path) -> PulsarSettings:
            return PulsarSettings(
                service_urls=[url], tls=TLSSettings(ca_file=str(ca_file), verify_hostname=True),
                operation_timeout=2, connection_timeout=1, connect_timeout=3,
            )

        stranger = make_test_certificates(tmp_path / "stranger").ca  # a CA nobody used
        with pytest.raises(BrokerUnavailable, match=r"certificate that tls\.ca_file trusts"):
            await PulsarBroker(settings(stranger)).connect()
        broker = PulsarBroker(settings(ca))
        await broker.connect()  # the handshake verified the broker against the trust file
        try:
            await round_trip(broker)
        except BrokerUnavailable:
            pulsar_lite_lacks(
                pulsar_server,
                "pulsar-lite's topic lookups advertise no TLS broker URL "
                "(brokerServiceUrlTls), so topics cannot be served over TLS; Apache Pulsar "
                "with brokerServicePortTls can",
            )
        finally:
            await broker.close(timeout=5)


async def test_close_drains_flushes_and_closes_the_client(pulsar_factory: Factory) -> None:
    broker = await pulsar_factory()
    other = await pulsar_factory()  # shares the process's client with `broker`
    await round_trip(broker)
    await broker.close(timeout=5)
    assert not await broker.healthy()
    with pytest.raises(BrokerUnavailable, match="not connected"):
        await broker.publish(unique("closed"), b"x")
    assert await other.healthy(), "closing one broker closed the shared client"
    await round_trip(other)


def test_client_logs_go_through_python_logging_only_when_debugging() -> None:
    # a Python logger makes the client take the GIL for each of its debug lines (several per
    # message), so it logs through its own console logger filtered at the same level
    python_logger = logging.getLogger("pulsar.client")
    before = python_logger.level
    try:
        python_logger.setLevel(logging.WARNING)
        assert isinstance(client_logger(), pulsar.ConsoleLogger)
        python_logger.setLevel(logging.DEBUG)
        assert client_logger() is python_logger
    finally:
        python_logger.setLevel(before)


def test_a_pattern_consumer_is_configured_with_subscribes_keywords() -> None:
    # regex consumers bypass pulsar.asyncio's subscribe (it cannot set the discovery period),
    # so every keyword the plugin passes must land in the configuration, or fail loudly
    conf = pattern_configuration(
        7, consumer_type=pulsar.ConsumerType.Shared, receiver_queue_size=12,
        initial_position=pulsar.InitialPosition.Earliest, is_pattern_topic=True,
        dead_letter_policy=pulsar.ConsumerDeadLetterPolicy(max_redeliver_count=3),
        unacked_messages_timeout_ms=None,
    )
    assert conf.pattern_auto_discovery_period() == 7
    assert conf.receiver_queue_size() == 12
    assert conf.consumer_type() == pulsar.ConsumerType.Shared
    assert conf.subscription_initial_position() == pulsar.InitialPosition.Earliest
    assert conf.dead_letter_policy().getMaxRedeliverCount() == 3
    with pytest.raises(AttributeError):
        pattern_configuration(1, no_such_option=True)
