"""Kafka connections: SASL/PLAIN and TLS on the session's Apache Kafka, and the one sentence
for an unreachable broker or refused credentials."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import pytest

from brokerline.core import BrokerError, BrokerUnavailable, MessageContext
from brokerline.core.embedded import free_port
from brokerline.kafka.broker import KafkaBroker
from brokerline.testing.apache_kafka import SASL_PASSWORD, SASL_USER, ApacheKafkaServer
from brokerline.testing.brokers import eventually, kafka_test_settings, unique

Factory = Callable[..., Awaitable[KafkaBroker]]


async def round_trip(broker: KafkaBroker) -> None:
    topic = unique("secure")
    got: list[bytes] = []

    async def handler(msg: bytes, ctx: MessageContext) -> None:
        got.append(msg)

    await broker.subscribe(topic, handler, group=unique("g"))
    await broker.publish(topic, b"over the secure listener")
    await eventually(lambda: got == [b"over the secure listener"], timeout=20)
    assert await broker.healthy()


async def test_sasl_plain_credentials_are_accepted(
    kafka_factory: Factory, apache_kafka_server: ApacheKafkaServer
) -> None:
    broker = await kafka_factory(
        bootstrap_servers=[apache_kafka_server.sasl_url], security_protocol="SASL_PLAINTEXT",
        sasl_username=SASL_USER, sasl_password=SASL_PASSWORD,
    )
    await round_trip(broker)


async def test_a_wrong_sasl_password_is_one_sentence_without_the_password(
    apache_kafka_server: ApacheKafkaServer,
) -> None:
    broker = KafkaBroker(kafka_test_settings(
        apache_kafka_server.sasl_url, security_protocol="SASL_PLAINTEXT",
        sasl_username=SASL_USER, sasl_password="not-the-password",
    ))
    with pytest.raises(BrokerError, match="refused the SASL credentials") as caught:
        await broker.connect()
    assert "not-the-password" not in str(caught.value)
    assert "KAFKA_SASL_PASSWORD" in str(caught.value)


async def test_tls_with_the_cluster_ca_works(
    kafka_factory: Factory, apache_kafka_server: ApacheKafkaServer
) -> None:
    certificates = apache_kafka_server.certificates
    if certificates is None:
        pytest.skip("the session's Apache Kafka has no TLS listener (openssl is missing)")
    broker = await kafka_factory(
        bootstrap_servers=[apache_kafka_server.ssl_url], security_protocol="SSL",
        tls={"ca_file": str(certificates.ca), "cert_file": str(certificates.client_cert),
             "key_file": str(certificates.client_key)},
    )
    await round_trip(broker)


async def test_tls_without_the_cluster_ca_is_one_sentence(
    apache_kafka_server: ApacheKafkaServer,
) -> None:
    if apache_kafka_server.certificates is None:
        pytest.skip("the session's Apache Kafka has no TLS listener (openssl is missing)")
    broker = KafkaBroker(kafka_test_settings(
        apache_kafka_server.ssl_url, security_protocol="SSL", request_timeout=3,
    ))
    with pytest.raises(BrokerUnavailable, match=r"TLS handshake .* failed.*KAFKA_TLS_CA_FILE"):
        await broker.connect()


async def test_an_unreachable_broker_is_one_sentence_naming_the_address() -> None:
    address = f"127.0.0.1:{free_port()}"
    broker = KafkaBroker(kafka_test_settings(address))
    began = time.monotonic()
    with pytest.raises(BrokerUnavailable, match=rf"cannot reach Kafka at {address} .*"
                                                 "MQ_NAME_SERVER"):
        await broker.connect()
    assert time.monotonic() - began < 15
    assert not await broker.healthy()
