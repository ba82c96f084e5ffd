"""Mutual TLS on a real Apache Pulsar: the broker requires a client certificate its CA signed.

A second standalone of this module's own (`tlsRequireTrustedClientCertOnConnect` is
broker-wide); the CA and the certificates are made here. One-way TLS with a trust file runs
on the session's server (test_pulsar_client.py::test_tls_with_a_trust_file).
"""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from brokerline.core import BrokerError, BrokerUnavailable, MessageContext
from brokerline.core.settings import TLSSettings
from brokerline.pulsar.broker import PulsarBroker
from brokerline.pulsar.settings import PulsarSettings
from brokerline.testing.apache_pulsar import ApachePulsarServer, apache_pulsar_standalone
from brokerline.testing.brokers import cannot_run, connected_brokers, eventually, unique
from brokerline.testing.tls import TestCertificates, make_test_certificates, missing_openssl


@pytest.fixture(scope="module")
def mutual(apache_pulsar_server: ApachePulsarServer) -> Iterator[ApachePulsarServer]:
    """An Apache Pulsar whose TLS ports refuse a client without a trusted certificate.

    Asks for the session's server first, so Java and Maven are checked the same way.
    """
    missing = missing_openssl()
    if missing is not None:
        cannot_run(missing, "CI must run the TLS tests")
    server = apache_pulsar_standalone(require_client_certificate=True)
    with server:
        yield server.start()


def certificates_of(server: ApachePulsarServer) -> TestCertificates:
    assert server.certificates is not None
    return server.certificates


def tls_settings(
    server: ApachePulsarServer, cert: Path | None = None, key: Path | None = None
) -> PulsarSettings:
    return PulsarSettings(
        service_urls=[server.tls_url],
        tls=TLSSettings(
            ca_file=str(certificates_of(server).ca), cert_file=cert and str(cert),
            key_file=key and str(key), verify_hostname=True,
        ),
        operation_timeout=3, connection_timeout=2, connect_timeout=3,
    )


async def test_a_client_certificate_the_ca_signed_is_accepted(
    mutual: ApachePulsarServer,
) -> None:
    files = certificates_of(mutual)
    seen: list[bytes] = []

    async def handler(msg: bytes, ctx: MessageContext) -> None:
        seen.append(msg)

    settings = tls_settings(mutual, files.client_cert, files.client_key)
    async with connected_brokers(lambda: PulsarBroker(settings)) as connect:
        broker = await connect()
        topic = unique("mtls")
        await broker.subscribe(topic, handler, group=unique("g"))
        await broker.publish(topic, b"over mutual TLS")
        await eventually(lambda: seen == [b"over mutual TLS"])


async def test_a_client_without_a_certificate_is_refused_with_the_fix(
    mutual: ApachePulsarServer,
) -> None:
    broker = PulsarBroker(tls_settings(mutual))
    with pytest.raises(BrokerUnavailable) as refused:
        await broker.connect()
    await broker.close(timeout=2)
    message = str(refused.value)
    assert mutual.tls_url in message
    assert "set tls.cert_file and tls.key_file" in message, message


async def test_a_client_certificate_from_another_ca_is_refused(
    mutual: ApachePulsarServer, tmp_path: Path
) -> None:
    stranger = make_test_certificates(tmp_path / "stranger")
    broker = PulsarBroker(tls_settings(mutual, stranger.client_cert, stranger.client_key))
    with pytest.raises(BrokerError, match=r"could not reach Pulsar|did not answer"):
        await broker.connect()
    await broker.close(timeout=2)


def test_the_https_admin_port_also_requires_the_client_certificate(
    mutual: ApachePulsarServer,
) -> None:
    files = certificates_of(mutual)
    url = f"{mutual.admin_tls_url}/admin/v2/clusters"
    context = ssl.create_default_context(cafile=str(files.ca))
    with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError)):
        urllib.request.urlopen(url, timeout=5, context=context).close()
    context.load_cert_chain(str(files.client_cert), str(files.client_key))
    with urllib.request.urlopen(url, timeout=5, context=context) as response:
        assert b"standalone" in response.read()
