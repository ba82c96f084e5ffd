"""The acknowledgement rules, decided in one place for every broker.

| the handler...                     | outcome                                              |
|------------------------------------|------------------------------------------------------|
| returns                            | ack                                                  |
| raises `Retry(delay)`              | redeliver after `delay` (or the backoff)             |
| raises any other exception         | redeliver after the backoff                          |
| ...and it was delivery max_deliveries | dead-letter with the error in a header, then ack  |
| raises `Reject(reason)`            | dead-letter at once, then ack                        |
| raises a transient error           | held: the subscription pauses, the handler is called |
|   (`Transient`, database or        | again once the dependency answers; never counted as  |
|   connection down; `is_transient`) | a delivery, never dead-lettered (see `flow`)         |
| (message cannot be decoded)        | dead-letter at once, never retried, then ack         |

Dead-lettering publishes to the subscription's dead-letter topic first and acks the original
only when that publish succeeded; if it fails, the message is redelivered: nothing is lost.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from brokerline.core.base import (
    Delivery,
    Envelope,
    SubscribeOptions,
    dead_letter_topic_for,
)
from brokerline.core.codec import Codec
from brokerline.core.errors import DecodeError, Reject, Retry
from brokerline.core.flow import FlowControl, Released
from brokerline.core.middleware import Middleware, Settlement, chain_handler
from brokerline.core.repeats import RepeatedLog
from brokerline.core.transient import describe_failure, is_transient

log = logging.getLogger("broker")

#: headers set on a dead-lettered message
DLQ_REASON = "x-dead-letter-reason"
DLQ_ORIGINAL_TOPIC = "x-original-topic"
DLQ_ORIGINAL_ID = "x-original-message-id"
DLQ_DELIVERIES = "x-deliveries"
MAX_REASON_LENGTH = 1024


class Action(enum.Enum):
    ACK = "ack"
    RETRY = "retry"


@dataclass(frozen=True, slots=True)
class Outcome:
    action: Action
    delay: float = 0.0
    dead_lettered: bool = False  # acked because it went to the dead-letter topic
    result: Any = None  # what the handler returned; NATS core sends it as the reply

    @property
    def acked(self) -> bool:
        return self.action is Action.ACK


ACK = Outcome(Action.ACK)
DEAD_LETTERED = Outcome(Action.ACK, dead_lettered=True)

Send = Callable[[Envelope], Awaitable[None]]
#: a single handler (message, MessageContext) or a batch one (list, BatchContext)
AnyHandler = Callable[[Any, Any], Awaitable[Any]]


class Dispatcher:
    """Decodes a delivery, runs the handler chain and decides the outcome."""

    def __init__(
        self,
        topic: str,
        group: str | None,
        handler: AnyHandler,
        *,
        options: SubscribeOptions,
        codec: Codec,
        middleware: list[Middleware],
        send: Send,
        flow: FlowControl | None = None,
    ) -> None:
        self.topic = topic
        self.group = group
        self.options = options
        self.dead_letter_topic = dead_letter_topic_for(topic, group, options)
        self._bind(handler, codec, middleware)
        self._send = send
        #: pauses the subscription while a dependency is down (shared by a subscription's
        #: dispatchers when it reads several topics)
        self.flow = flow or FlowControl(f"subscription {topic} (group {group})")
        self._dead_letters = RepeatedLog(log, logging.WARNING)
        # told how each delivery was settled (metrics); only the middleware that listen
        self._settle_hooks = [
            m.on_settle for m in middleware if type(m).on_settle is not Middleware.on_settle
        ]
        # key -> a future that completes when the last message seen with that key is done
        self._key_tails: dict[str, asyncio.Future[None]] = {}
        self._sequence_keys = options.ordered and options.concurrency > 1

    def _bind(self, handler: AnyHandler, codec: Codec, middleware: list[Middleware]) -> None:
        """The decoder the handler's annotation asks for, and the handler chain."""
        self._decode = codec.decoder_for(handler)
        self._handler: AnyHandler = chain_handler(handler, middleware, self.topic, self.group)

    async def process(self, delivery: Delivery, order_key: str | None = None) -> Outcome:
        """Decide the outcome of one delivery.

        Plugins call this as soon as a message arrives (before awaiting anything else): the
        per-key queueing below happens before the first await, so arrival order is kept.
        `order_key` (default: the message's key) names the sequence the message is ordered
        in; Kafka orders a partition's keyless messages by their partition.
        """
        key = (order_key or delivery.key) if self._sequence_keys else None
        if not key:
            outcome = await self._decide(delivery)
        else:
            outcome = await self._in_key_order(key, delivery)
        if self._settle_hooks:
            self._settled(outcome)
        return outcome

    async def _in_key_order(self, key: str, delivery: Delivery) -> Outcome:
        previous = self._key_tails.get(key)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._key_tails[key] = done
        try:
            if previous is not None:
                await asyncio.wait([previous])  # unlike `await previous`, never cancels it
            return await self._decide(delivery)
        finally:
            done.set_result(None)
            if self._key_tails.get(key) is done:
                del self._key_tails[key]

    def _settled(self, outcome: Outcome) -> None:  # tell the middleware that listen
        settlement: Settlement = (
            "dead_letter" if outcome.dead_lettered else "ack" if outcome.acked else "redeliver"
        )
        for hook in self._settle_hooks:
            hook(self.topic, self.group, settlement)

    async def _decide(self, delivery: Delivery) -> Outcome:
        limit = self.options.max_message_bytes
        if limit is not None and len(delivery.payload) > limit:
            size = len(delivery.payload)
            return await self._dead_letter(delivery, f"oversized: {size} bytes > {limit}")
        try:
            msg = self._decode(delivery.payload, delivery.headers.get("content-type"))
        except DecodeError as exc:
            return await self._dead_letter(delivery, f"decode error: {exc}")
        delivery.group = self.group  # the delivery is the handler's MessageContext
        try:
            try:  # `_call`'s first attempt, inlined: this runs once per message
                result = await self._handler(msg, delivery)
            except Exception as exc:
                if isinstance(exc, Reject) or not is_transient(exc):
                    raise
                result = await self._call(msg, delivery, held=exc)
            else:
                if self.flow.reason is not None:
                    self.flow.answered()
        except Released:  # closing while the message waited for a dependency: hand it back
            return self._released(delivery)
        except Reject as exc:
            return await self._dead_letter(delivery, f"rejected: {exc}")
        except Exception as exc:  # any handler failure is a retry, up to max_deliveries
            delay = exc.delay if isinstance(exc, Retry) else None
            return await self._failed(delivery, describe_failure(exc), delay)
        return ACK if result is None else Outcome(Action.ACK, result=result)

    async def _failed(self, delivery: Delivery, failure: str, delay: float | None) -> Outcome:
        """A failed delivery: redeliver after `delay` (or the backoff), or dead-letter it when
        it was the `max_deliveries`-th."""
        attempts = delivery.redelivery_count + 1
        if attempts >= self.options.max_deliveries:
            return await self._dead_letter(delivery, f"failed {attempts} times: {failure}")
        if delay is None:
            delay = self.options.backoff.delay(delivery.redelivery_count)
        return Outcome(Action.RETRY, delay)

    def _released(self, delivery: Delivery) -> Outcome:
        return Outcome(Action.RETRY, self.options.backoff.delay(delivery.redelivery_count))

    async def _call(self, msg: Any, ctx: Any, held: Exception | None = None) -> Any:
        """The handler chain; a transient failure holds the message instead of failing it.

        `held`: the transient failure of an attempt already made (hold first, then call)."""
        flow = self.flow
        was_held = held is not None
        if held is not None:
            await flow.hold(held)
        while True:
            try:
                result = await self._handler(msg, ctx)
            except Exception as exc:
                if isinstance(exc, Reject) or not is_transient(exc):
                    # a held message failing for another reason reached the dependency; a
                    # new one (e.g. refused by validation) says nothing about it
                    if was_held:
                        flow.answered()
                    raise
                was_held = True
                await flow.hold(exc)  # until the dependency answers (or the subscription closes)
                continue
            if flow.reason is not None:  # inlined check: this runs once per message
                flow.answered()
            return result

    async def _dead_letter(self, delivery: Delivery, reason: str) -> Outcome:
        headers = dict(delivery.headers)
        headers[DLQ_REASON] = reason[:MAX_REASON_LENGTH]
        headers[DLQ_ORIGINAL_TOPIC] = delivery.topic
        headers[DLQ_ORIGINAL_ID] = delivery.message_id
        headers[DLQ_DELIVERIES] = str(delivery.redelivery_count + 1)
        envelope = Envelope(self.dead_letter_topic, delivery.payload, delivery.key, headers)
        try:
            await self._send(envelope)
        except Exception as exc:
            log.error(
                "could not dead-letter message %s of %s to %s (%s); it will be redelivered",
                delivery.message_id, delivery.topic, self.dead_letter_topic, exc,
            )
            return Outcome(Action.RETRY, self.options.backoff.delay(delivery.redelivery_count))
        self._dead_letters.log(
            reason.split(":", 1)[0], "dead-lettered message %s of %s to %s: %s",
            delivery.message_id, delivery.topic, self.dead_letter_topic, reason,
        )
        return DEAD_LETTERED
