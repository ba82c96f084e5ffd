"""The broker plugin API: one shape for every broker.

A plugin implements `Broker` (connect, close, publish, publish_batch, subscribe, healthy).
What happens to a delivered message (decode, middleware, handler, ack / retry / dead-letter) is
decided once, in `dispatch.Dispatcher`, so every broker follows the same acknowledgement rules;
a plugin only maps the decided `Outcome` onto its own primitives.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from brokerline.core.errors import BrokerError

if TYPE_CHECKING:
    from brokerline.core.batch import BatchHandler, BatchOptions

#: The publish header that names a message for the broker's deduplication: publish the same
#: logical message (a retry, a resend) with the same value and a broker that deduplicates
#: stores it once. Each plugin maps it to its native mechanism: JetStream's `Nats-Msg-Id`
#: (dropped within the stream's `duplicate_window`), NATS core's `Nats-Msg-Id` (the
#: subscriber's `ctx.message_id`, no dedupe: the server keeps nothing), Pulsar and memory a
#: plain header / property of this name (no broker dedupe: make the consumer idempotent on
#: it, and see Pulsar's producer dedupe for resends of one producer).
MESSAGE_ID_HEADER = "message-id"


class SubscriptionType(enum.StrEnum):
    """How the consumers of one group share a topic (Pulsar's subscription types)."""

    SHARED = "shared"  # round-robin across consumers: the queue pattern (default)
    EXCLUSIVE = "exclusive"  # one consumer only; a second one is refused
    FAILOVER = "failover"  # one active consumer, the others take over when it leaves
    KEY_SHARED = "key_shared"  # messages with the same key go to the same consumer


class InitialPosition(enum.StrEnum):
    """Where a new group starts reading a topic that already holds messages."""

    EARLIEST = "earliest"
    LATEST = "latest"


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before redelivering a failed message: initial * multiplier**attempt, capped."""

    initial: float = 0.1
    multiplier: float = 2.0
    maximum: float = 30.0

    def delay(self, redelivery_count: int) -> float:
        return min(self.maximum, self.initial * self.multiplier**redelivery_count)


@dataclass(frozen=True, slots=True)
class SubscribeOptions:
    """Per-subscription settings, the same names on every broker.

    `max_deliveries` counts the first delivery: with 5, a message that always fails is handled
    five times, then dead-lettered. `dead_letter_topic` defaults to Pulsar's convention
    `<topic>-<group>-DLQ`. `concurrency` is the number of handlers in flight for this
    subscription; the broker's prefetch is sized to match. With `ordered` (the default),
    messages that share a key are handled one at a time, in the order they arrived, even when
    `concurrency` is above one (a message that is retried goes back to the broker and so
    comes after the ones behind it).
    """

    max_deliveries: int = 5
    backoff: Backoff = field(default_factory=Backoff)
    dead_letter_topic: str | None = None
    concurrency: int = 1
    subscription_type: SubscriptionType = SubscriptionType.SHARED
    initial_position: InitialPosition = InitialPosition.EARLIEST
    ack_wait: float = 30.0
    ordered: bool = True
    max_message_bytes: int | None = None  # larger messages are dead-lettered, never handled

    def __post_init__(self) -> None:
        if self.max_deliveries < 1:
            raise ValueError(f"max_deliveries must be at least 1, got {self.max_deliveries}")
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {self.concurrency}")


def dead_letter_topic_for(topic: str, group: str | None, options: SubscribeOptions) -> str:
    """The dead-letter topic of a subscription: configured, or `<topic>-<group>-DLQ`."""
    if options.dead_letter_topic:
        return options.dead_letter_topic
    return f"{topic}-{group or 'default'}-DLQ"


# The per-message records below are plain slotted dataclasses, not frozen ones: a frozen
# dataclass costs four times as much to build, and one of each is built per message. Treat
# them as read-only all the same.


@dataclass(slots=True)
class MessageContext:
    """What a handler knows about the message besides its decoded body (read-only)."""

    topic: str
    key: str | None
    headers: Mapping[str, str]
    message_id: str
    redelivery_count: int  # 0 on the first delivery
    publish_time: datetime | None
    group: str | None = None


@dataclass(slots=True)
class Delivery(MessageContext):
    """A message as a plugin received it, before decoding: the context its handler gets,
    and the payload.

    The dispatcher hands the delivery itself to the handler as its `MessageContext` (setting
    `group`): one record per message, not two. The payload is left out of its repr, so a
    logged context shows no message content.
    """

    payload: bytes = field(kw_only=True, repr=False)


@dataclass(slots=True)
class Envelope:
    """A message on its way out: already encoded, with its routing data."""

    topic: str
    payload: bytes
    key: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float | None = None  # seconds before the broker may deliver it




Handler = Callable[[Any, MessageContext], Awaitable[Any]]


class Subscription(abc.ABC):
    """A live subscription; `close()` stops fetching and waits for in-flight handlers."""

    topic: str
    group: str | None

    @abc.abstractmethod
    async def close(self, timeout: float | None = None) -> None: ...


class Broker(abc.ABC):
    """A message broker connection that publishes and subscribes.

    Every method is a coroutine. `close()` first drains subscriptions (waiting for in-flight
    handlers and acknowledging their outcome), then flushes publishers, then disconnects.
    """

    #: the configuration name of the plugin (`memory`, `nats`, `jetstream`, `pulsar`)
    type_name: ClassVar[str]
    #: whether `publish(..., delay=...)` is honoured by the broker
    supports_delay: ClassVar[bool] = False

    def __init__(self) -> None:
        from brokerline.core.codec import Codec
        from brokerline.core.flow import FlowRegistry
        from brokerline.core.middleware import Middleware

        self.codec: Codec = Codec()
        self.middleware: list[Middleware] = []
        #: each subscription's pause state while a dependency is down (for readiness)
        self.flows = FlowRegistry()

    # -- lifecycle -------------------------------------------------------------------------
    @abc.abstractmethod
    async def connect(self) -> None: ...

    @abc.abstractmethod
    async def close(self, timeout: float | None = None) -> None: ...

    @abc.abstractmethod
    async def healthy(self) -> bool: ...

    # -- publishing ------------------------------------------------------------------------
    async def publish(
        self,
        topic: str,
        msg: Any,
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
        delay: float | None = None,
    ) -> None:
        """Encode `msg` and publish it; returns once the broker has accepted it."""
        await self._publish_chain(self._envelope(topic, msg, key, headers, delay))

    async def publish_batch(
        self,
        topic: str,
        msgs: Sequence[Any],
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Publish several messages; returns once the broker has accepted all of them."""
        envelopes = [self._envelope(topic, m, key, headers, None) for m in msgs]
        for middleware in self.middleware:
            envelopes = middleware.on_publish_batch(envelopes)
        await self._send_batch(envelopes)

    def _envelope(
        self,
        topic: str,
        msg: Any,
        key: str | None,
        headers: Mapping[str, str] | None,
        delay: float | None,
    ) -> Envelope:
        if delay is not None and delay > 0 and not self.supports_delay:
            raise BrokerError(
                f"the {self.type_name} broker cannot delay delivery; "
                "publish without delay or use a broker that supports it (pulsar, jetstream)"
            )
        payload, content_type = self.codec.encode(msg)
        all_headers = {"content-type": content_type}
        if headers:
            all_headers.update(headers)
        return Envelope(topic, payload, key, all_headers, delay)

    async def _publish_chain(self, envelope: Envelope) -> None:
        for middleware in self.middleware:
            envelope = middleware.on_publish(envelope)
        await self._send(envelope)

    @abc.abstractmethod
    async def _send(self, envelope: Envelope) -> None:
        """Hand one encoded message to the broker and wait for its acceptance."""

    async def _send_batch(self, envelopes: Sequence[Envelope]) -> None:
        """Hand many messages to the broker; plugins override this to pipeline them."""
        for envelope in envelopes:
            await self._send(envelope)

    # -- subscribing -----------------------------------------------------------------------
    @abc.abstractmethod
    async def subscribe(
        self,
        topic: str,
        handler: Handler,
        *,
        group: str | None = None,
        options: SubscribeOptions | None = None,
    ) -> Subscription:
        """Deliver the messages of `topic` to `handler`.

        Consumers with the same `group` share the messages (each is handled once in the
        group); different groups each receive every message. The handler's first parameter
        annotation picks the decoding (protobuf class, pydantic model, dataclass, dict, bytes).
        """

    async def subscribe_batch(
        self,
        topic: str,
        handler: BatchHandler,
        *,
        group: str | None = None,
        options: SubscribeOptions | None = None,
        batch: BatchOptions | None = None,
    ) -> Subscription:
        """Deliver the messages of `topic` to `handler` in batches (see `brokerline.core.batch`).

        `handler(batch: list[T], ctx: BatchContext)` is called with up to `batch.max_size`
        decoded messages, or what arrived within `batch.max_wait` of the first; it settles
        them by returning (all acked), raising (all redelivered) or returning a `BatchResult`.
        `options.concurrency` is the number of batches in flight. A plugin implements it with
        a `BatchSource` and `batch.batch_loop`.
        """
        raise BrokerError(
            f"the {self.type_name} broker has no batch subscriber; subscribe a single-message "
            "handler with subscribe(), or use a broker plugin that implements subscribe_batch"
        )
