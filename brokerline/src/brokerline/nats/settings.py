"""NATS connection settings, shared by the NATS core and JetStream plugins."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from brokerline.core.settings import PluginSettings, Seconds, TLSSettings
from brokerline.core.urls import check_scheme
from brokerline.jetstream.settings import StreamSettings


class NatsSettings(PluginSettings):
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
    # JetStream: seconds a stream or consumer request at start-up is asked again while the
    # server does not answer (it restarts; a cluster elects a leader); 0 fails at once
    setup_retry_for: float = Field(30.0, ge=0)
    stream: StreamSettings = Field(default_factory=StreamSettings)

    @field_validator("servers")
    @classmethod
    def _nats_urls(cls, servers: list[str]) -> list[str]:
        for entry in servers:
            for url in entry.split(","):
                check_scheme(url.strip(), "NATS")
        return servers
