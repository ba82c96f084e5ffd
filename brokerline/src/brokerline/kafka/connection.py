"""What the producer, the consumers and the admin client share: their connection keywords
(bootstrap servers, security, timeouts), topic provisioning and one-sentence errors."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)
from aiokafka.helpers import create_ssl_context

from brokerline.core.errors import BrokerError, BrokerUnavailable
from brokerline.kafka.settings import KafkaSettings

log = logging.getLogger("broker.kafka")


def tls_context(settings: KafkaSettings) -> ssl.SSLContext | None:
    if not settings.security_protocol.endswith("SSL"):
        return None
    tls = settings.tls
    context = create_ssl_context(
        cafile=tls.ca_file, certfile=tls.cert_file, keyfile=tls.key_file
    )
    context.check_hostname = tls.verify_hostname
    return context


def client_keywords(settings: KafkaSettings) -> dict[str, Any]:
    """The keywords every aiokafka client takes, from the settings."""
    keywords: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "client_id": settings.client_id,
        "request_timeout_ms": int(settings.request_timeout * 1000),
        "security_protocol": settings.security_protocol,
        "ssl_context": tls_context(settings),
    }
    if settings.security_protocol.startswith("SASL_"):
        assert settings.sasl_password is not None  # checked by the settings
        keywords.update(
            sasl_mechanism=settings.sasl_mechanism,
            sasl_plain_username=settings.sasl_username,
            sasl_plain_password=settings.sasl_password.get_secret_value(),
        )
    return keywords


def where(settings: KafkaSettings) -> str:
    return ", ".join(settings.bootstrap_servers) or "no bootstrap servers"


class _BootstrapFailures(logging.Filter):
    """Takes aiokafka's "Unable connect to ..." lines: the only place it says why."""

    def __init__(self) -> None:
        super().__init__()
        self.reasons: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith("Unable connect to"):
            self.reasons.append(message.split(": ", 1)[-1])
            return False  # the connect error says it once, in a sentence
        return True


@contextlib.contextmanager
def bootstrap_failures() -> Iterator[list[str]]:
    """While connecting: why each bootstrap connection failed (aiokafka raises only
    "Unable to bootstrap" and logs the cause, a refused SASL login or a TLS failure)."""
    collector = _BootstrapFailures()
    logger = logging.getLogger("aiokafka")  # the client module logs under the package name
    logger.addFilter(collector)
    try:
        yield collector.reasons
    finally:
        logger.removeFilter(collector)


def connect_error(
    settings: KafkaSettings, exc: BaseException, reasons: Sequence[str] = ()
) -> BrokerError:
    """The one sentence for a failed start: unreachable, refused credentials, or TLS."""
    servers = where(settings)
    text = f"{type(exc).__name__}: {exc}".strip()
    why = reasons[-1] if reasons else text
    if isinstance(exc, ssl.SSLError) or "SSL" in why:
        return BrokerUnavailable(
            f"the TLS handshake with Kafka at {servers} failed ({why}); check "
            "broker.kafka.tls.ca_file (KAFKA_TLS_CA_FILE) and the certificate's host name"
        )
    if "sasl" in why.lower() or "authentication" in why.lower():
        return BrokerError(
            f"Kafka at {servers} refused the SASL credentials ({why}); check "
            "broker.kafka.sasl_username / sasl_password (KAFKA_SASL_USERNAME, "
            "KAFKA_SASL_PASSWORD) and sasl_mechanism"
        )
    if isinstance(exc, (KafkaConnectionError, OSError, TimeoutError)):
        return BrokerUnavailable(
            f"cannot reach Kafka at {servers} ({why}); check broker.address "
            "(MQ_NAME_SERVER, KAFKA_BOOTSTRAP_SERVERS), broker.kafka.security_protocol and "
            "that the brokers are running"
        )
    return BrokerError(f"Kafka at {servers} failed at connect ({text})")


class TopicProvisioner:
    """Creates a topic the first time this process uses it (`create_topics`), idempotently."""

    def __init__(self, settings: KafkaSettings) -> None:
        self.settings = settings
        self._admin: AIOKafkaAdminClient | None = None
        self._known: set[str] = set()

    async def start(self) -> None:
        if self.settings.create_topics:
            admin = AIOKafkaAdminClient(**client_keywords(self.settings))
            await start_or_close(admin.start, admin.close)
            self._admin = admin

    async def close(self) -> None:
        if self._admin is not None:
            await self._admin.close()
            self._admin = None

    async def ensure(self, topic: str) -> None:
        if self._admin is None or topic in self._known:
            return
        new = NewTopic(
            topic, self.settings.topic_partitions, self.settings.topic_replication_factor
        )
        try:
            response = await self._admin.create_topics([new])
        except TopicAlreadyExistsError:
            pass
        except KafkaError as exc:
            raise BrokerError(
                f"could not create Kafka topic {topic!r} ({type(exc).__name__}: {exc}); "
                "create it yourself or check broker.kafka.topic_replication_factor against "
                "the number of brokers"
            ) from None
        else:
            for entry in getattr(response, "topic_errors", []) or []:
                name, code = entry[0], entry[1]  # v1+ adds the error message
                if code not in (0, TopicAlreadyExistsError.errno):
                    raise BrokerError(
                        f"could not create Kafka topic {name!r} (error code {code}); "
                        "create it yourself or check broker.kafka.topic_replication_factor"
                    )
        self._known.add(topic)


def is_missing_topic(exc: BaseException) -> bool:
    return isinstance(exc, UnknownTopicOrPartitionError)


async def start_or_close(
    start: Callable[[], Awaitable[object]], close: Callable[[], Awaitable[object]]
) -> None:
    """Start an aiokafka client; a failed start leaves its connections open, so close it
    before the failure propagates."""
    try:
        await start()
    except BaseException:
        with contextlib.suppress(Exception):
            await close()
        raise


async def stop_client(stop: Awaitable[object]) -> None:
    """Await a client's stop(), which fails only on a broker already gone. aiokafka's
    consumer then re-raises the CancelledError of its own fetch tasks, cancelled by that
    stop; a cancellation of this task still propagates."""
    try:
        await stop
    except (KafkaError, OSError):
        pass
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
