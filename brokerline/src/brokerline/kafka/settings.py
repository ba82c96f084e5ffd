"""Settings of the Kafka plugin (section `broker.kafka`): connection, security, producer,
consumer group, topic provisioning. No client import: validated where aiokafka is absent."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, SecretStr, field_validator, model_validator

from brokerline.core.settings import LOWERCASE, PluginSettings, Seconds, TLSSettings


def _uppercase(value: object) -> object:
    return value.strip().upper() if isinstance(value, str) else value


UPPERCASE = BeforeValidator(_uppercase)
SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


def check_bootstrap_server(address: str) -> str:
    """`host:port` (Kafka addresses have no scheme); else ValueError with the fix."""
    address = address.strip()
    if address.lower().startswith("kafka://"):
        address = address[len("kafka://"):]
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit() or not 0 < int(port) <= 65535:
        raise ValueError(
            f"{address!r} is not a Kafka bootstrap server; write it as host:port, e.g. "
            "kafka-1:9092 (a comma-separated list for several)"
        )
    return address


class KafkaSettings(PluginSettings):
    """Apache Kafka (or any broker that speaks its protocol)."""

    # host:port list (KAFKA_BOOTSTRAP_SERVERS; broker.address / MQ_NAME_SERVER fill it)
    bootstrap_servers: list[str] = Field(default_factory=list)
    client_id: Annotated[str, Field(min_length=1)] = "brokerline"
    # KAFKA_SECURITY_PROTOCOL; SASL_* needs sasl_username and sasl_password
    security_protocol: Annotated[SecurityProtocol, UPPERCASE] = "PLAINTEXT"
    sasl_mechanism: Annotated[SaslMechanism, UPPERCASE] = "PLAIN"  # KAFKA_SASL_MECHANISM
    sasl_username: str | None = None  # KAFKA_SASL_USERNAME
    sasl_password: SecretStr | None = None  # KAFKA_SASL_PASSWORD
    tls: TLSSettings = Field(default_factory=TLSSettings)  # with SSL / SASL_SSL
    request_timeout: Seconds = 30.0  # one request to a broker (metadata, produce, commit)
    # -- producer ---------------------------------------------------------------------------
    # the broker stores a resent batch once (per producer session); needs acks=all
    enable_idempotence: bool = True
    acks: Annotated[Literal["all", "1", "0"], LOWERCASE] = "all"
    linger_ms: int = Field(5, ge=0)  # the longest a lone publish waits for company
    batch_size: int = Field(256 * 1024, ge=1024)  # bytes per partition batch
    compression: Annotated[Literal["none", "gzip", "snappy", "lz4", "zstd"], LOWERCASE] = "none"
    max_request_size: int = Field(1024 * 1024, ge=1024)  # the largest produce request, bytes
    # -- consumer group ---------------------------------------------------------------------
    # static membership (KIP-345), KAFKA_GROUP_INSTANCE_ID: a name stable across restarts
    # and unique among running processes (a StatefulSet pod's name). A process restarted
    # with it takes its partitions back at once, without a rebalance; one that stops for
    # good keeps them until session_timeout. Each subscription adds its topic to it.
    group_instance_id: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9._-]+$")] | None = (
        None
    )
    session_timeout: Seconds = 10.0  # a member silent this long leaves the group
    heartbeat_interval: Seconds = 1.0  # also how soon members notice a rebalance
    max_poll_interval: Seconds = 300.0
    # the longest a revoked partition's in-flight handlers may take before the rebalance goes
    # on without committing them (their messages then go to the next owner again)
    rebalance_timeout: Seconds = 30.0
    commit_interval: Seconds = 0.2  # settled offsets are committed at most this often
    # records fetched ahead of the handlers; None: 4 x concurrency, at least 32
    prefetch: int | None = Field(None, ge=1)
    # -- topics -----------------------------------------------------------------------------
    # create a topic the first time it is published to or subscribed (partitions, replicas
    # below); off where an operator provisions topics and the broker refuses auto-creation
    create_topics: bool = True
    topic_partitions: int = Field(3, ge=1)  # KAFKA_TOPIC_PARTITIONS
    topic_replication_factor: int = Field(1, ge=1)  # KAFKA_TOPIC_REPLICATION_FACTOR

    @field_validator("bootstrap_servers")
    @classmethod
    def _host_and_port(cls, servers: list[str]) -> list[str]:
        return [
            check_bootstrap_server(entry) for item in servers for entry in item.split(",")
            if entry.strip()
        ]

    @model_validator(mode="after")
    def _consistent(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL_") and not (
            self.sasl_username and self.sasl_password
        ):
            raise ValueError(
                f"broker.kafka.security_protocol {self.security_protocol} needs "
                "broker.kafka.sasl_username and sasl_password (KAFKA_SASL_USERNAME, "
                "KAFKA_SASL_PASSWORD); set both or use PLAINTEXT / SSL"
            )
        if self.enable_idempotence and self.acks != "all":
            raise ValueError(
                f"broker.kafka.enable_idempotence needs acks all, not {self.acks}; set acks "
                "to all or enable_idempotence to false"
            )
        if self.heartbeat_interval >= self.session_timeout:
            raise ValueError(
                "broker.kafka.heartbeat_interval must be below session_timeout (a third of it "
                "is usual)"
            )
        return self
