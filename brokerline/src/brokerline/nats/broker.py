"""The NATS core plugin: subjects, queue groups, headers and request/reply.

Mapping: a topic is a subject (wildcards `a.*` and `a.>` subscribe to many); `group` is a
queue group (each message goes to one member); no group means every subscriber gets every
message. The key travels in a header (`x-message-key`); a message with no key, no headers of
its own and no trace context goes out as a plain PUB without headers (the subscriber decodes by
its handler's annotation, so the content type is not needed), because a header block costs more
than the rest of a small message's trip. The subscriber gives each message an id
(`ctx.message_id`), or keeps the `Nats-Msg-Id` the publisher put in the headers.

Retries on NATS core. The server keeps nothing and never redelivers, so this plugin
redelivers in-process: a failed message is put back into the subscription's own queue after
the backoff delay, with its redelivery count raised, on the same consumer, up to
`max_deliveries`, then it is dead-lettered like on every broker. This survives a failing
handler, not a crash: a message in memory when the process dies is gone. For at-least-once
delivery across restarts use the `jetstream` plugin. `close()` stops taking new messages and
waits (within its timeout) for those already taken, retries included, to be settled.
Delayed publish does not exist on NATS core (`supports_delay = False`).

Request/reply: `await broker.request(topic, msg, timeout=...)` sends a request and returns the
decoded reply. A subscriber answers by returning a value from its handler: when the message
came with a reply subject, the returned value (empty bytes for None) is sent back once the
handler succeeded. Avoid `request()` on a subject that a JetStream stream captures: the
stream would answer first with its publish acknowledgement.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as ClientSubscription

from brokerline.core.base import (
    Broker,
    Delivery,
    Envelope,
    Handler,
    SubscribeOptions,
    Subscription,
    SubscriptionType,
)
from brokerline.core.batch import BatchBuffer, BatchHandler, BatchOptions, batch_loop
from brokerline.core.batch_dispatch import BatchDispatcher
from brokerline.core.consumer_loop import YIELD_EVERY, ConsumerLoop
from brokerline.core.dispatch import Dispatcher, Outcome
from brokerline.core.errors import BrokerError, BrokerUnavailable
from brokerline.nats.connection import (
    MessageIds,
    core_headers,
    open_connection,
    split_headers,
    wire_headers,
)
from brokerline.nats.settings import NatsSettings

log = logging.getLogger("broker.nats")

#: the headers of a message that came without any (shared: one allocation less per message)
NO_HEADERS: Mapping[str, str] = MappingProxyType({})
#: messages a core subscription holds per unit of concurrency (queued, in flight, retrying);
#: past that the server-side buffer fills up and NATS reports a slow consumer
HELD_PER_WORKER = 64
FLUSH_TIMEOUT = 5.0


class RequestTimeout(BrokerError, TimeoutError):
    """Nobody answered a `request()` in time."""


def check_shared(type_name: str, options: SubscribeOptions) -> None:
    """NATS shares a group's messages among its consumers; other Pulsar types do not exist."""
    if options.subscription_type is not SubscriptionType.SHARED:
        raise BrokerError(
            f"the {type_name} broker has no {options.subscription_type.value} subscriptions "
            "(a group is shared by its consumers); use subscription_type shared or pulsar"
        )


def wildcard_safe(topic: str) -> str:
    """A publishable name for a wildcard subject (for its dead-letter topic)."""
    return topic.replace(".>", ".all").replace(".*", ".any").replace("*", "any")


@dataclass(slots=True)
class _Inbound:
    delivery: Delivery
    reply: str | None


class NatsSubscription(Subscription):
    """A core subscription: the server pushes, the client library queues, this handles.

    With `concurrency` 1 (the default) each message is handled inside the client's delivery
    callback, which already runs one message at a time in arrival order: no second queue, no
    hop between tasks. With more, the callback feeds a bounded local queue that
    `concurrency` workers drain. Retried messages wait out their delay on a timer, then take
    their turn like a new message.
    """

    def __init__(
        self, broker: NatsBroker, topic: str, group: str | None, dispatcher: Dispatcher,
        options: SubscribeOptions, batch: BatchOptions | None = None,
    ) -> None:
        self.topic = topic
        self.group = group
        self._broker = broker
        self._next_id = broker.next_id
        self._dispatcher = dispatcher
        self._direct = options.concurrency == 1 and batch is None
        self._turn = asyncio.Lock()  # direct mode: one handler at a time, retries included
        self._streak = 0  # direct mode: messages handled since the last yield to the loop
        self._retrying: set[asyncio.Task[None]] = set()
        self._queue: asyncio.Queue[_Inbound] = asyncio.Queue()
        self._room = asyncio.Semaphore(options.concurrency * HELD_PER_WORKER)
        # batch mode's backpressure: a count against a limit (no semaphore round per message)
        self._limit = 0
        self._room_freed = asyncio.Event()
        self._held = 0  # messages taken from the server and not yet settled
        self._settled = asyncio.Event()
        self._settled.set()
        self._timers: set[asyncio.TimerHandle] = set()
        name = f"nats:{topic}:{group or '-'}"
        self._loop: ConsumerLoop[Any]
        self._buffer: BatchBuffer[_Inbound] = BatchBuffer()
        #: where a message waits for a worker (a retried one too, after its delay)
        self._enqueue: Callable[[_Inbound], None] = self._queue.put_nowait
        if batch is None:
            self._loop = ConsumerLoop(
                self._queue.get, self._handle, concurrency=options.concurrency, name=name,
                flow=dispatcher.flow,
            )
        else:  # the delivery callback buffers; each worker takes a batch from the buffer
            assert isinstance(dispatcher, BatchDispatcher)
            self._enqueue = self._buffer.put
            self._limit = max(HELD_PER_WORKER, 2 * batch.max_size) * options.concurrency
            self._loop = batch_loop(
                self, dispatcher, batch, concurrency=options.concurrency, name=name
            )
        self._sub: ClientSubscription | None = None
        self._closed = False

    async def start(self, client: NatsClient) -> None:
        receive = self._receive_direct if self._direct else self._receive_queued
        if self._limit:
            receive = self._receive_batched
        self._sub = await client.subscribe(self.topic, queue=self.group or "", cb=receive)
        if not self._direct:
            self._loop.start()

    def _take(self, msg: Msg) -> _Inbound:
        headers: Mapping[str, str]
        if msg.headers:
            headers, key, msg_id = split_headers(msg.headers)
        else:
            headers, key, msg_id = NO_HEADERS, None, None
        delivery = Delivery(
            msg.subject, key, headers, msg_id or self._next_id(), 0, None, payload=msg.data
        )
        self._held += 1
        if self._held == 1:  # was settled: not any more
            self._settled.clear()
        return _Inbound(delivery, msg.reply or None)

    async def _receive_direct(self, msg: Msg) -> None:
        item = self._take(msg)
        self._streak += 1
        if self._streak >= YIELD_EVERY:  # nats-py calls back message after message without
            self._streak = 0  # suspending: handlers that never await would starve the loop
            await asyncio.sleep(0)
        async with self._turn:  # `_handle_in_turn`, inlined: this runs once per message
            await self._handle(item)

    async def _receive_queued(self, msg: Msg) -> None:
        await self._room.acquire()  # backpressure: the server buffers while we are full
        self._enqueue(self._take(msg))

    async def _receive_batched(self, msg: Msg) -> None:
        while self._held >= self._limit:  # backpressure: the server buffers while we are full
            self._room_freed.clear()
            await self._room_freed.wait()
        self._buffer.put(self._take(msg))

    async def _handle(self, item: _Inbound) -> None:
        try:
            outcome = await self._dispatcher.process(item.delivery)
        except asyncio.CancelledError:  # stopped mid-handler: it counts as not handled
            self._done()
            raise
        if outcome.acked:
            if item.reply and not outcome.dead_lettered:
                await self._answer(item.reply, outcome)
            self._done()
            return
        item.delivery.redelivery_count += 1
        self._redeliver_later(item, outcome.delay)

    # -- the BatchSource of a batch subscription --------------------------------------------
    async def receive(self, max_size: int, max_wait: float) -> list[_Inbound]:
        return await self._buffer.receive(max_size, max_wait)

    def delivery(self, message: _Inbound) -> Delivery:
        return message.delivery

    async def settle(self, messages: Sequence[_Inbound], outcomes: Sequence[Outcome]) -> None:
        settled = 0
        for message, outcome in zip(messages, outcomes, strict=True):
            if outcome.acked:
                settled += 1
                continue
            message.delivery.redelivery_count += 1
            self._redeliver_later(message, outcome.delay)
        self._batch_done(settled)

    async def give_back(self, messages: Sequence[_Inbound]) -> None:
        self._batch_done(len(messages))  # NATS core cannot redeliver: they count as not handled

    def _batch_done(self, count: int) -> None:
        self._held -= count
        if self._held == 0:
            self._settled.set()
        if self._held < self._limit:
            self._room_freed.set()

    async def _handle_in_turn(self, item: _Inbound) -> None:
        """Direct mode: new and retried messages take turns, one handler at a time."""
        async with self._turn:
            await self._handle(item)

    def _redeliver_later(self, item: _Inbound, delay: float) -> None:
        def release() -> None:
            self._timers.discard(timer)
            if not self._direct:
                self._enqueue(item)
                return
            task = asyncio.ensure_future(self._handle_in_turn(item))
            self._retrying.add(task)
            task.add_done_callback(self._retrying.discard)

        timer = asyncio.get_running_loop().call_later(max(delay, 0.0), release)
        self._timers.add(timer)

    async def _answer(self, reply: str, outcome: Outcome) -> None:
        payload, headers = b"", {}
        if outcome.result is not None:
            payload, content_type = self._broker.codec.encode(outcome.result)
            headers = {"content-type": content_type}
        try:
            await self._broker.client.publish(reply, payload, headers=headers)
        except Exception as exc:  # the requester times out; the message itself was handled
            log.warning("could not answer a request on %s: %s", self.topic, exc)

    def _done(self) -> None:
        self._held -= 1
        if not self._direct:
            self._room.release()
        if self._held == 0:
            self._settled.set()

    async def close(self, timeout: float | None = None) -> None:
        if self._closed:
            return
        self._closed = True
        deadline = None if timeout is None else time.monotonic() + timeout
        self._dispatcher.flow.release()  # messages held for a dependency stop waiting
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._sub.drain(), timeout)  # no new messages
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._settled.wait(), _left(deadline))
        await self._loop.stop(_left(deadline))
        for timer in self._timers:
            timer.cancel()
        for task in list(self._retrying):  # a retry still running past the timeout
            task.cancel()
        if self._held:
            log.warning(
                "%s: %d message(s) were not handled before close; NATS core cannot redeliver "
                "them (use the jetstream broker for at-least-once delivery)",
                self.topic, self._held,
            )
        self._broker._subscriptions.discard(self)


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


class NatsBroker(Broker):
    type_name = "nats"
    supports_delay = False

    def __init__(self, settings: NatsSettings) -> None:
        super().__init__()
        self.settings = settings
        self._client: NatsClient | None = None
        self._subscriptions: set[Subscription] = set()
        self._ids = MessageIds()

    # -- lifecycle -------------------------------------------------------------------------
    async def connect(self) -> None:
        if self._client is None or self._client.is_closed:
            self._client = await open_connection(self.settings)

    async def close(self, timeout: float | None = None) -> None:
        await asyncio.gather(*(s.close(timeout) for s in list(self._subscriptions)))
        client, self._client = self._client, None
        if client is not None and not client.is_closed:
            with contextlib.suppress(Exception):
                await client.flush(timeout=2)  # acks and publishes still in the buffer
            # a server already gone (an embedded one stopped by the same Ctrl-C) leaves
            # nothing to close politely: the connection is lost either way
            with contextlib.suppress(ConnectionError):
                await client.close()

    async def healthy(self) -> bool:
        return self._client is not None and self._client.is_connected

    @property
    def client(self) -> NatsClient:
        if self._client is None or self._client.is_closed:
            raise BrokerUnavailable(f"the {self.type_name} broker is not connected; call connect()")
        return self._client

    def next_id(self) -> str:
        return self._ids.next()

    # -- publishing ------------------------------------------------------------------------
    async def _send(self, envelope: Envelope) -> None:
        await self._publish(envelope)
        await self._flush()

    async def _send_batch(self, envelopes: Sequence[Envelope]) -> None:
        publish = self.client.publish  # `_publish` inlined: this loop runs once per message
        envelope = None
        try:
            for envelope in envelopes:
                headers = core_headers(envelope.headers, envelope.key)
                await publish(envelope.topic, envelope.payload, "", headers)
        except nats.errors.Error as exc:
            assert envelope is not None
            raise BrokerError(
                f"could not publish to NATS subject {envelope.topic!r}: {exc}"
            ) from exc
        await self._flush()

    async def _publish(self, envelope: Envelope, reply: str = "") -> None:
        headers = core_headers(envelope.headers, envelope.key)
        try:
            await self.client.publish(envelope.topic, envelope.payload, reply, headers)
        except nats.errors.Error as exc:
            raise BrokerError(
                f"could not publish to NATS subject {envelope.topic!r}: {exc}"
            ) from exc

    async def _flush(self) -> None:
        """Wait until the server has everything published so far (NATS core's only ack)."""
        try:
            await self.client.flush(timeout=FLUSH_TIMEOUT)  # type: ignore[arg-type]
        except (nats.errors.Error, TimeoutError) as exc:
            raise BrokerUnavailable(
                f"NATS did not confirm the publish within {FLUSH_TIMEOUT:g}s ({exc}); "
                "check that the server is reachable"
            ) from exc

    async def request(
        self,
        topic: str,
        msg: Any,
        *,
        timeout: float = 1.0,
        headers: Mapping[str, str] | None = None,
        response_type: Any = bytes,
    ) -> Any:
        """Send `msg` as a request and return the reply, decoded as `response_type`."""
        envelope = self._envelope(topic, msg, None, headers, None)
        for middleware in self.middleware:
            envelope = middleware.on_publish(envelope)
        wire = wire_headers(envelope.headers, None, self.next_id())
        try:
            reply = await self.client.request(topic, envelope.payload, timeout, headers=wire)
        except nats.errors.NoRespondersError:
            raise BrokerError(
                f"no subscriber answers requests on {topic!r}; start one before requesting"
            ) from None
        except (nats.errors.TimeoutError, TimeoutError):
            raise RequestTimeout(
                f"no reply on {topic!r} within {timeout:g}s; the responder is slow or failing"
            ) from None
        content_type = (reply.headers or {}).get("content-type")
        return self.codec.decoder_for_type(response_type)(reply.data, content_type)

    # -- subscribing -----------------------------------------------------------------------
    async def subscribe(
        self,
        topic: str,
        handler: Handler,
        *,
        group: str | None = None,
        options: SubscribeOptions | None = None,
    ) -> Subscription:
        return await self._subscribe(topic, handler, group, options, None)

    async def subscribe_batch(
        self,
        topic: str,
        handler: BatchHandler,
        *,
        group: str | None = None,
        options: SubscribeOptions | None = None,
        batch: BatchOptions | None = None,
    ) -> Subscription:
        return await self._subscribe(topic, handler, group, options, batch or BatchOptions())

    async def _subscribe(
        self, topic: str, handler: Handler | BatchHandler, group: str | None,
        options: SubscribeOptions | None, batch: BatchOptions | None,
    ) -> Subscription:
        options = options or SubscribeOptions()
        check_shared(self.type_name, options)
        if options.dead_letter_topic is None and wildcard_safe(topic) != topic:
            options = dataclasses.replace(
                options, dead_letter_topic=f"{wildcard_safe(topic)}-{group or 'default'}-DLQ"
            )
        kind = Dispatcher if batch is None else BatchDispatcher
        dispatcher = kind(
            topic, group, handler,
            options=options, codec=self.codec, middleware=self.middleware, send=self._send,
            flow=self.flows.new(f"subscription {topic} (group {group})"),
        )
        subscription = NatsSubscription(self, topic, group, dispatcher, options, batch)
        await subscription.start(self.client)
        await self._flush()  # the server knows the subscription before we return
        self._subscriptions.add(subscription)
        return subscription
