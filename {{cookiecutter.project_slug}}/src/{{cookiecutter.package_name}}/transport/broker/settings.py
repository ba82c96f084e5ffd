"""Connection and tuning settings of the broker plugins.

Plain pydantic models with no client imports, so the configuration layer can validate every
broker's section even when that broker's plugin was not generated. Secrets are `SecretStr`:
they print as '**********' and are read with `.get_secret_value()` only where they are used.

Every number has its meaningful range and every enumerated string its accepted values
(case-insensitive), so a bad value is refused when the configuration is loaded, with the
setting's name, not later as a puzzling connection failure.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, field_validator

from .urls import check_scheme


def _lowercase(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


#: an enumerated setting: `Annotated[Literal[...], LOWERCASE]` accepts any case
LOWERCASE = BeforeValidator(_lowercase)
Seconds = Annotated[float, Field(gt=0)]
Name = Annotated[str, Field(min_length=1, pattern=r"^[^\s/]+$")]  # a path segment, no spaces


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TLSSettings(_Settings):
    """TLS for the broker connection; files are PEM paths."""

    ca_file: str | None = None  # trust this CA (a self-signed cluster's CA)
    cert_file: str | None = None  # client certificate, for mutual TLS
    key_file: str | None = None
    verify_hostname: bool = True


class StreamSettings(_Settings):
    """A JetStream stream provisioned at start (left alone if it exists and is compatible)."""

    # JetStream names: no spaces, dots, wildcards or path separators
    name: str = Field("EVENTS", pattern=r"^[^\s.*>/\\]+$")
    subjects: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=lambda: ["events.>"], min_length=1
    )
    replicas: int = Field(1, ge=1, le=5)  # NATS_STREAM_REPLICAS; JetStream allows 1 to 5
    storage: Annotated[Literal["file", "memory"], LOWERCASE] = "file"
    max_age: float = Field(0.0, ge=0)  # seconds; 0 keeps messages until acked / limits
    duplicate_window: float = Field(120.0, ge=0)  # seconds of Nats-Msg-Id deduplication


class NatsSettings(_Settings):
    """NATS core and JetStream (the same connection options for both)."""

    servers: list[str] = Field(default_factory=list)  # empty: start the embedded nats-server
    name: str | None = None  # connection name shown by the server
    token: SecretStr | None = None  # NATS_TOKEN
    user: str | None = None  # NATS_USERNAME
    password: SecretStr | None = None  # NATS_PASSWORD
    nkey_seed: str | None = None  # NATS_NKEY_SEED: path to an NKey seed file
    credentials: str | None = None  # a .creds file (user JWT + seed)
    jwt_token: SecretStr | None = None  # NATS_JWT_TOKEN: a user JWT, signed with nkey_seed
    tls: TLSSettings = Field(default_factory=TLSSettings)
    connect_timeout: Seconds = 5.0  # one connection attempt at start
    reconnect_wait: Seconds = 1.0
    max_reconnect_attempts: int = Field(-1, ge=-1)  # -1: forever
    # JetStream: seconds a publish the stream did not take (no leader during a cluster
    # election, no acknowledgement) is resent with the same message id (at most half of
    # stream.duplicate_window); 0 fails at the first refusal
    publish_retry_for: float = Field(15.0, ge=0)
    stream: StreamSettings = Field(default_factory=StreamSettings)

    @field_validator("servers")
    @classmethod
    def _nats_urls(cls, servers: list[str]) -> list[str]:
        for entry in servers:
            for url in entry.split(","):
                check_scheme(url.strip(), "NATS")
        return servers


class PulsarSettings(_Settings):
    """Apache Pulsar (or any broker that speaks its binary protocol)."""

    service_urls: list[str] = Field(default_factory=list)  # empty: start embedded pulsar-lite
    jwt_token: SecretStr | None = None  # PULSAR_JWT_TOKEN
    tls: TLSSettings = Field(default_factory=TLSSettings)
    # one connection attempt at start: how long the first lookup may take before the attempt
    # counts as failed (the client itself would retry a refused connection for the whole
    # operation_timeout, and broker.connect_attempts multiplies that)
    connect_timeout: Seconds = 5.0
    operation_timeout: Seconds = 30.0  # any later client operation (lookup, create, close)
    connection_timeout: Seconds = 10.0  # one TCP connect + Pulsar handshake
    tenant: Name = "public"
    namespace: Name = "default"
    batching: bool = True
    batching_max_messages: int = Field(1000, ge=1)
    batching_max_bytes: int = Field(128 * 1024, ge=1)
    batching_max_delay_ms: int = Field(1, ge=0)  # the longest a lone publish() waits for company
    compression: Annotated[Literal["none", "lz4", "zlib", "zstd", "snappy"], LOWERCASE] = "none"
    # use key_based with Key_Shared subscriptions
    batching_type: Annotated[Literal["default", "key_based"], LOWERCASE] = "default"
    max_pending_messages: int = Field(1000, ge=1)  # in-flight sends per producer; more wait
    send_timeout: Seconds = 30.0  # seconds a send may wait for the broker's acceptance
    # the consumer's floor for a redelivery; longer backoffs are held by the plugin first
    negative_ack_redelivery_delay: float = Field(0.1, ge=0)  # seconds (the client's is 60)
    # prefetch per consumer; None: 2 x concurrency, at least 10
    receiver_queue_size: int | None = Field(None, ge=1)
    retry_letter_topic: bool = False  # retries via <topic>-<sub>-RETRY with deliver_after
    dead_letter_backstop: bool = True  # client DLQ for messages that crash/hang the consumer
    # auto: probe the broker at connect
    delayed_delivery: Annotated[Literal["auto", "on", "off"], LOWERCASE] = "auto"
    regex_subscription_mode: Annotated[
        Literal["persistent", "non_persistent", "all"], LOWERCASE
    ] = "persistent"

    @field_validator("service_urls")
    @classmethod
    def _pulsar_urls(cls, urls: list[str]) -> list[str]:
        for entry in urls:
            for url in entry.split(","):
                check_scheme(url.strip(), "Pulsar")
        return urls
