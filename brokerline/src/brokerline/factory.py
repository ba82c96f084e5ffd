"""Builds the configured broker; starts a local one only where `broker.embedded` asks for it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from brokerline.config import BrokerConfig, ConfigError
from brokerline.core import Backoff, Broker, BrokerError, LoggingMiddleware, SubscribeOptions
from brokerline.core.embedded import EmbeddedBroker, start_embedded
from brokerline.core.registry import is_registered, plugin_factory
from brokerline.core.urls import redact
from brokerline.kafka.settings import KafkaSettings
from brokerline.nats.settings import NatsSettings
from brokerline.pulsar.settings import PulsarSettings
from brokerline.telemetry import broker_middleware

log = logging.getLogger(__name__)

SCHEMES = {"nats": "nats://", "jetstream": "nats://", "pulsar": "pulsar://"}


def _with_scheme(address: str, scheme: str) -> str:
    return address if "://" in address else scheme + address


def plugin_settings(cfg: BrokerConfig, addresses: list[str]) -> dict[str, Any]:
    """The keyword arguments of the plugin's constructor for `cfg`."""
    if cfg.type in ("nats", "jetstream"):
        nats = cfg.nats
        if addresses and not nats.servers:
            nats = nats.model_copy(
                update={"servers": [_with_scheme(a, "nats://") for a in addresses]}
            )
        return {"settings": nats}
    if cfg.type == "pulsar":
        pulsar = cfg.pulsar
        if addresses and not pulsar.service_urls:
            pulsar = pulsar.model_copy(
                update={"service_urls": [_with_scheme(a, "pulsar://") for a in addresses]}
            )
        return {"settings": pulsar}
    if cfg.type == "kafka":
        kafka = cfg.kafka
        if addresses and not kafka.bootstrap_servers:
            kafka = kafka.model_copy(update={"bootstrap_servers": addresses})
        return {"settings": kafka}
    if is_registered(cfg.type):  # a plugin of the user's own: it reads its addresses
        return {"addresses": addresses}
    return {}


def check_files(cfg: BrokerConfig) -> None:
    """Fail before connecting if a configured TLS or credentials file does not exist."""
    prefix = {"nats": "nats", "jetstream": "nats", "kafka": "kafka"}.get(cfg.type, "pulsar")
    sections: dict[str, NatsSettings | KafkaSettings | PulsarSettings] = {
        "nats": cfg.nats, "kafka": cfg.kafka, "pulsar": cfg.pulsar,
    }
    section = sections[prefix]
    files = {f"tls.{n}": getattr(section.tls, n) for n in ("ca_file", "cert_file", "key_file")}
    if prefix == "nats":
        files.update({"nkey_seed": cfg.nats.nkey_seed, "credentials": cfg.nats.credentials})
    for name, path in files.items():
        if path and not Path(path).is_file():
            raise ConfigError(
                f"broker.{prefix}.{name} {path!r} does not exist; fix the path or unset it"
            )


def has_address(cfg: BrokerConfig) -> bool:
    return bool(
        cfg.addresses() or cfg.nats.servers or cfg.pulsar.service_urls
        or cfg.kafka.bootstrap_servers
    )


#: per broker type: its own server-list setting (and environment name) besides broker.address
SERVER_SETTINGS = {
    "nats": "broker.nats.servers (NATS_SERVER_URL)",
    "jetstream": "broker.nats.servers (NATS_SERVER_URL)",
    "pulsar": "broker.pulsar.service_urls",
    "kafka": "broker.kafka.bootstrap_servers (KAFKA_BOOTSTRAP_SERVERS)",
}


def check_broker_config(cfg: BrokerConfig) -> None:
    """Fail before anything starts: an unknown type, a missing file, or no broker to reach.

    Without an address a process could only start a broker of its own; in production each
    pod would then keep its events to itself, so that needs `broker.embedded: true`.
    """
    plugin_factory(cfg.type)  # an unknown type fails here, before any process is started
    if cfg.type == "memory":
        return
    check_files(cfg)
    if not has_address(cfg) and not cfg.embedded:
        raise ConfigError(
            f"no {cfg.type} broker address is configured; set broker.address "
            f"(BROKER_ADDRESS or MQ_NAME_SERVER) or {SERVER_SETTINGS[cfg.type]} to the "
            "running broker, or, for development only, broker.embedded: true "
            "(BROKER_EMBEDDED=true) to start a local broker in this process"
        )


def build_broker(cfg: BrokerConfig, addresses: list[str] | None = None) -> Broker:
    """A new, unconnected broker of the configured type (raises UnknownBrokerType)."""
    factory = plugin_factory(cfg.type)
    if addresses is None:
        addresses = cfg.addresses()
    broker = factory(**plugin_settings(cfg, addresses))
    broker.middleware.extend(broker_middleware(broker.type_name))  # tracing, metrics
    broker.middleware.append(LoggingMiddleware())
    return broker


def subscribe_options(cfg: BrokerConfig) -> SubscribeOptions:
    sub = cfg.subscriber
    return SubscribeOptions(
        max_deliveries=sub.max_deliveries,
        concurrency=sub.concurrency,
        backoff=Backoff(initial=sub.backoff_initial, maximum=sub.backoff_max),
        ack_wait=sub.ack_wait,
        max_message_bytes=sub.max_message_bytes,
        subscription_type=sub.subscription_type,
        initial_position=sub.initial_position,
    )


def subscription_overrides(cfg: BrokerConfig) -> dict[str, dict[str, Any]]:
    """Per topic, the `SubscribeOptions` fields `broker.subscriptions` sets for it."""
    return {topic: override.changes() for topic, override in cfg.subscriptions.items()}


async def connect_with_retries(broker: Broker, attempts: int, where: str) -> None:
    """Connect, retrying with a growing pause; after `attempts` failures, one clear error."""
    delay = 0.5
    for attempt in range(1, attempts + 1):
        try:
            await broker.connect()
            return
        except BrokerError as exc:
            if attempt == attempts:
                raise BrokerError(
                    f"cannot connect to the {broker.type_name} broker at {where} after "
                    f"{attempts} attempts: {exc}"
                ) from None
            log.warning("broker not reachable (attempt %d of %d): %s", attempt, attempts, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


async def _start_embedded(kind: str) -> EmbeddedBroker:
    """Start the embedded broker in a thread; if cancelled meanwhile, stop it once it is up.

    A plain executor future, not a task: a SIGINT during start-up cancels every task, and
    the broker process the thread is starting must not outlive that.
    """
    starting = asyncio.get_running_loop().run_in_executor(None, start_embedded, kind)
    try:
        return await asyncio.shield(starting)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            (await starting).cleanup()
        raise


async def broker_resource(cfg: BrokerConfig) -> AsyncIterator[Broker]:
    """A connected broker for the app's lifetime (a dependency-injector resource)."""
    check_broker_config(cfg)
    embedded: EmbeddedBroker | None = None
    addresses = cfg.addresses()
    if cfg.type != "memory" and not has_address(cfg):  # so broker.embedded is true
        embedded = await _start_embedded(cfg.type)
        addresses = [embedded.url]
        log.info("broker.embedded: started a local %s broker at %s", cfg.type, embedded.url)
    broker = build_broker(cfg, addresses)
    where = ", ".join(redact(a) for a in addresses) or "the configured servers"
    try:
        await connect_with_retries(broker, cfg.connect_attempts, where)
    except BaseException:
        if embedded:
            embedded.cleanup()
        raise
    try:
        yield broker
    finally:
        await broker.close(timeout=10)
        if embedded:
            embedded.cleanup()
