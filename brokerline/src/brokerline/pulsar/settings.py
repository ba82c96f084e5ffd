"""Settings of the Pulsar plugin: connection, producers, consumers."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator

from brokerline.core.base import SubscriptionType
from brokerline.core.settings import LOWERCASE, Name, PluginSettings, Seconds, TLSSettings
from brokerline.core.urls import check_scheme

#: where one consumer sees every message of a topic in order: a cumulative ack fits, and
#: Apache Pulsar dispatches delayed messages at once
SINGLE_CONSUMER_TYPES = frozenset({SubscriptionType.EXCLUSIVE, SubscriptionType.FAILOVER})
CUMULATIVE_ACK_TYPES = SINGLE_CONSUMER_TYPES


class PulsarSettings(PluginSettings):
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
    # partitioned topics: a message with a key goes to hash(key) % partitions in both modes;
    # the mode places messages without a key (the next partition in turn, or one for the
    # producer's life); the hashing: the client's own (boost::hash), or one of the Java client's
    partition_routing: Annotated[Literal["round_robin", "single_partition"], LOWERCASE] = (
        "round_robin"
    )
    partition_key_hashing: Annotated[
        Literal["client", "java_string", "murmur3_32"], LOWERCASE
    ] = "client"
    # the producers' name, for broker-side deduplication: (producer_name, sequence id) is the
    # dedupe key, so keep it stable across restarts and unique among running processes
    producer_name: Annotated[str, Field(min_length=1, pattern=r"^[^\s]+$")] | None = None
    max_pending_messages: int = Field(1000, ge=1)  # in-flight sends per producer; more wait
    send_timeout: Seconds = 30.0  # seconds a send may wait for the broker's acceptance
    # the consumer's floor for a redelivery; longer backoffs are held by the plugin first
    negative_ack_redelivery_delay: float = Field(0.1, ge=0)  # seconds (the client's is 60)
    # prefetch per consumer; None: 2 x concurrency, at least 10
    receiver_queue_size: int | None = Field(None, ge=1)
    # ack a run of handled messages with one cumulative ack (exclusive and failover
    # subscriptions only); never past a message that is still being handled or was retried
    cumulative_ack: bool = False
    retry_letter_topic: bool = False  # retries via <topic>-<sub>-RETRY with deliver_after
    dead_letter_backstop: bool = True  # client DLQ for messages that crash/hang the consumer
    # auto: probe the broker at connect
    delayed_delivery: Annotated[Literal["auto", "on", "off"], LOWERCASE] = "auto"
    regex_subscription_mode: Annotated[
        Literal["persistent", "non_persistent", "all"], LOWERCASE
    ] = "persistent"
    # how often a regex subscription lists the namespace's topics, so a topic created after
    # subscribing is consumed within this many seconds (whole seconds; the client's default)
    pattern_auto_discovery_period: Seconds = 60.0

    @field_validator("service_urls")
    @classmethod
    def _pulsar_urls(cls, urls: list[str]) -> list[str]:
        for entry in urls:
            for url in entry.split(","):
                check_scheme(url.strip(), "Pulsar")
        return urls
