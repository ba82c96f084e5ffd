"""The JetStream stream the plugin provisions (section `broker.nats.stream`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from brokerline.core.settings import LOWERCASE, PluginSettings


class StreamSettings(PluginSettings):
    """A JetStream stream provisioned at start (left alone if it exists and is compatible)."""

    # JetStream names: no spaces, dots, wildcards or path separators
    name: str = Field("EVENTS", pattern=r"^[^\s.*>/\\]+$")
    subjects: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=lambda: ["events.>"], min_length=1
    )
    replicas: int = Field(1, ge=1, le=5)  # NATS_STREAM_REPLICAS; JetStream allows 1 to 5
    storage: Annotated[Literal["file", "memory"], LOWERCASE] = "file"
    max_age: float = Field(0.0, ge=0)  # seconds; 0 keeps messages until acked / limits
    # NATS_STREAM_DUPLICATE_WINDOW: seconds within which a second message with the same
    # Nats-Msg-Id (a publish's MESSAGE_ID_HEADER) is dropped; 0 takes the server's (2 min)
    duplicate_window: float = Field(120.0, ge=0)
