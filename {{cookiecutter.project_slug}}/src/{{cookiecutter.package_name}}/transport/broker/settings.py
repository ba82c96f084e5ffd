"""Connection and tuning settings of the broker plugins.

Plain pydantic models with no client imports, so the configuration layer can validate every
broker's section even when that broker's plugin was not generated. Secrets are `SecretStr`:
they print as '**********' and are read with `.get_secret_value()` only where they are used.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr


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

    name: str = "EVENTS"
    subjects: list[str] = Field(default_factory=lambda: ["events.>"])
    replicas: int = 1  # NATS_STREAM_REPLICAS
    storage: str = "file"  # file | memory
    max_age: float = 0.0  # seconds; 0 keeps messages until acked by every consumer / limits
    duplicate_window: float = 120.0  # seconds of Nats-Msg-Id deduplication


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
    connect_timeout: float = 5.0
    reconnect_wait: float = 1.0
    max_reconnect_attempts: int = -1  # -1: forever
    # JetStream: seconds a publish the stream did not take (no leader during a cluster
    # election, no acknowledgement) is resent with the same message id (at most half of
    # stream.duplicate_window); 0 fails at the first refusal
    publish_retry_for: float = Field(15.0, ge=0)
    stream: StreamSettings = Field(default_factory=StreamSettings)


class PulsarSettings(_Settings):
    """Apache Pulsar (or any broker that speaks its binary protocol)."""

    service_urls: list[str] = Field(default_factory=list)  # empty: start embedded pulsar-lite
    jwt_token: SecretStr | None = None  # PULSAR_JWT_TOKEN
    tls: TLSSettings = Field(default_factory=TLSSettings)
    operation_timeout: float = 30.0
    connection_timeout: float = 10.0
    tenant: str = "public"
    namespace: str = "default"
    batching: bool = True
    batching_max_messages: int = 1000
    batching_max_bytes: int = 128 * 1024
    batching_max_delay_ms: int = 1  # the longest a lone publish() waits for company
    compression: str = "none"  # none | lz4 | zlib | zstd
    batching_type: str = "default"  # default | key_based (use key_based with Key_Shared)
    max_pending_messages: int = 1000  # in-flight sends per producer; more wait, never drop
    send_timeout: float = 30.0  # seconds a send may wait for the broker's acceptance
    # the consumer's floor for a redelivery; longer backoffs are held by the plugin first
    negative_ack_redelivery_delay: float = 0.1  # seconds (the client's default is 60)
    receiver_queue_size: int | None = None  # prefetch per consumer; None: 2 x concurrency, >= 10
    retry_letter_topic: bool = False  # retries via <topic>-<sub>-RETRY with deliver_after
    dead_letter_backstop: bool = True  # client DLQ for messages that crash/hang the consumer
    delayed_delivery: str = "auto"  # auto (probe the broker at connect) | on | off
    regex_subscription_mode: str = "persistent"  # persistent | non_persistent | all
