"""Pulsar producers: one per topic, cached, pipelined, with back-pressure instead of drops.

Sends go straight to the binding's producer (`_pulsar.Producer.send_async`, the object under
`pulsar.asyncio.Producer`), whose completion callbacks run on the client's I/O thread. Going
through `pulsar.asyncio.Producer.send` instead costs a task, a future and a thread-safe
event-loop wakeup (a self-pipe write) per message, which made batched publishing three times
slower than the raw client. Here the messages handed to the client together form a `_Sends`
group: the I/O thread only counts their completions and wakes the event loop once, when the
last one has settled. No failure is dropped: a group settles with its first failure explained
and the number of messages that failed, and the caller gets that error.

Back-pressure: the client fails a send with `ProducerQueueIsFull` when more than
`max_pending_messages` are in flight and `block_if_queue_full` is off, and blocking instead
would stall the event-loop thread. So each producer has a `_Window` of `max_pending_messages`
slots: a sender takes slots before handing messages over and waits, asynchronously, while none
is free; a settled group gives its slots back from the I/O thread.

No explicit flush anywhere: the binding's `flush`/`flush_async` take the producer's lock
while holding the GIL and can deadlock against the I/O thread that completes sends (seen:
the event loop hung). A short batching delay (`batching_max_delay_ms`, 1 ms by default)
bounds the wait instead, and `close()` waits for the groups in flight.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import _pulsar
import pulsar
from pulsar.asyncio import Client, Producer, PulsarException

from brokerline.core.base import Envelope
from brokerline.core.errors import BrokerError
from brokerline.pulsar.client import (
    BATCHING,
    COMPRESSION,
    OK_VALUE,
    TopicNames,
    choice,
    explain,
    result_name,
)
from brokerline.pulsar.routing import ROUTING_MODES, key_router
from brokerline.pulsar.settings import PulsarSettings

log = logging.getLogger("broker.pulsar")

UNBOUNDED = 1 << 30


@dataclass(slots=True)
class PulsarEnvelope(Envelope):
    """An envelope with the Pulsar-only message fields.

    `key` (from `Envelope`) is the partition / sharding key; `ordering_key` overrides it for
    Key_Shared dispatch; `deliver_at` is an absolute delayed-delivery time; `sequence_id` the
    producer's sequence id of the message (broker-side deduplication, with `producer_name`).
    """

    ordering_key: str | None = None
    event_time: datetime | None = None
    deliver_at: datetime | None = None
    sequence_id: int | None = None


def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def build_message(envelope: Envelope) -> _pulsar.Message:
    """The client message for one envelope: payload, properties and routing fields."""
    builder = _pulsar.MessageBuilder().content(envelope.payload)
    if envelope.headers:
        builder.properties(envelope.headers)
    if envelope.key is not None:
        builder.partition_key(envelope.key)
    if envelope.delay is not None and envelope.delay > 0:
        builder.deliver_after(timedelta(seconds=envelope.delay))
    if isinstance(envelope, PulsarEnvelope):
        if envelope.ordering_key is not None:
            builder.ordering_key(envelope.ordering_key)
        if envelope.event_time is not None:
            builder.event_timestamp(_millis(envelope.event_time))
        if envelope.deliver_at is not None:
            builder.deliver_at(_millis(envelope.deliver_at))
        if envelope.sequence_id is not None:
            builder.sequence_id(envelope.sequence_id)
    return builder.build()


def _numbered(envelope: Envelope) -> bool:
    return isinstance(envelope, PulsarEnvelope) and envelope.sequence_id is not None


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _call_soon_threadsafe(loop: asyncio.AbstractEventLoop, callback: object, *args: object) -> None:
    try:
        loop.call_soon_threadsafe(callback, *args)  # type: ignore[arg-type]
    except RuntimeError:  # the loop is closed: nobody is left to tell
        pass


class _Window:
    """The free send slots of one producer (at most `max_pending_messages` in flight).

    Taken on the event loop, given back on the I/O thread, hence the lock. A waiting sender is
    woken only once a quarter of the window is free, so that a long batch moves in large
    groups instead of waking the loop for every completed send.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, size: int) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        size = size if size > 0 else UNBOUNDED  # 0 or less: no limit on this side
        self._free = size
        self._refill = max(1, size // 4)
        self._waiters: list[asyncio.Future[None]] = []

    @property
    def group_size(self) -> int:
        """The most messages one `_Sends` group holds: slots come back group by group."""
        return self._refill

    async def take(self, wanted: int) -> int:
        """Reserve between 1 and `wanted` slots; waits while none is free."""
        while True:
            with self._lock:
                if self._free > 0:
                    taken = min(wanted, self._free)
                    self._free -= taken
                    return taken
                waiter = self._loop.create_future()
                self._waiters.append(waiter)
            await waiter

    def give_back(self, count: int) -> None:
        """Return slots (any thread); wakes the waiting senders when enough are free."""
        with self._lock:
            self._free += count
            if self._free < self._refill or not self._waiters:
                return
            waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            _call_soon_threadsafe(self._loop, _wake, waiter)


class _Sends:
    """Messages handed to one producer together, settled on the event loop in one step.

    `future` resolves to the message id of the last send when all were accepted, or fails with
    the first failure explained; `failed` then counts the messages that were not accepted.
    """

    def __init__(self, pool: ProducerPool, window: _Window, topic: str, count: int) -> None:
        self.future: asyncio.Future[str] = pool.loop.create_future()
        self.failed = 0
        self._pool = pool
        self._window = window
        self._topic = topic
        self._count = count
        self._left = count
        self._lock = threading.Lock()
        self._first_failure: pulsar.Result | None = None
        self._message_id: object = ""

    def on_sent(self, result: pulsar.Result, message_id: _pulsar.MessageId | None) -> None:
        """The client's send callback (I/O thread): count; the last one wakes the loop."""
        with self._lock:
            if result.value != OK_VALUE:
                self.failed += 1
                if self._first_failure is None:
                    self._first_failure = result
            elif message_id is not None:
                self._message_id = message_id
            self._left -= 1
            if self._left:
                return
        self._window.give_back(self._count)
        _call_soon_threadsafe(self._pool.loop, self._settle)

    def _settle(self) -> None:
        if self.future.done():
            return
        if self._first_failure is None:
            self.future.set_result(str(self._message_id))
            return
        error = explain(PulsarException(self._first_failure), f"sending to {self._topic}",
                        self._pool.url)
        self.future.set_exception(error)


class _TopicProducer:
    """One cached producer and its window of free send slots."""

    def __init__(self, topic: str, producer: Producer, window: _Window) -> None:
        self.topic = topic
        self.producer = producer
        # the binding's producer under `pulsar.asyncio`: its callbacks run on the I/O thread
        self.send_async = producer._producer.send_async
        self.window = window
        self.numbered_by_caller: bool | None = None  # set by the first send of a named producer

    def check_numbering(self, by_caller: bool) -> None:
        """A named producer's sequence ids come from the caller always, or never.

        The client numbers its messages from the broker's last id at creation and does not
        follow the caller's ids, so with broker-side dedupe on, a message it numbers after
        caller-numbered ones could be dropped as a duplicate.
        """
        if self.numbered_by_caller is None:
            self.numbered_by_caller = by_caller
        elif self.numbered_by_caller != by_caller:
            raise BrokerError(
                f"publishing to {self.topic} under producer_name mixes messages with and "
                "without sequence_id, and the broker's dedupe could drop the ones without; "
                "pass sequence_id on every publish to this topic, or on none"
            )


class ProducerPool:
    """Creates producers on first use, one per topic; `close()` settles and closes them all."""

    def __init__(
        self, client: Client, settings: PulsarSettings, names: TopicNames, url: str
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.url = url
        self._client = client
        self._settings = settings
        self._names = names
        self._producers: dict[str, _TopicProducer] = {}
        self._creating: dict[str, asyncio.Lock] = {}
        self._in_flight: set[asyncio.Future[str]] = set()  # groups of sends not yet settled
        self._compression = choice(COMPRESSION, settings.compression, "compression")
        self._batching_type = choice(BATCHING, settings.batching_type, "batching_type")
        self._routing_mode = choice(ROUTING_MODES, settings.partition_routing, "partition_routing")

    @property
    def topics(self) -> list[str]:
        return list(self._producers)

    async def _producer_for(self, topic: str) -> _TopicProducer:
        cached = self._producers.get(topic)
        if cached is not None:
            return cached
        lock = self._creating.setdefault(topic, asyncio.Lock())
        async with lock:  # concurrent first sends to a topic create one producer, not many
            cached = self._producers.get(topic)
            if cached is not None:
                return cached
            s = self._settings
            try:
                producer = await self._client.create_producer(
                    topic,
                    producer_name=s.producer_name,
                    send_timeout_millis=int(s.send_timeout * 1000),
                    compression_type=self._compression,
                    max_pending_messages=s.max_pending_messages,
                    block_if_queue_full=False,  # never block the loop; the window waits
                    batching_enabled=s.batching,
                    batching_max_messages=s.batching_max_messages,
                    batching_max_allowed_size_in_bytes=s.batching_max_bytes,
                    batching_max_publish_delay_ms=s.batching_max_delay_ms,
                    batching_type=self._batching_type,
                    message_routing_mode=self._routing_mode,
                    message_router=key_router(s.partition_key_hashing, s.partition_routing),
                )
            except Exception as exc:
                if result_name(exc) == "ProducerBusy":
                    raise BrokerError(
                        f"Pulsar refused a producer named {s.producer_name!r} on {topic}: "
                        "another one of that name is connected; give every running process "
                        "its own broker.pulsar.producer_name"
                    ) from None
                raise explain(exc, f"creating a producer for {topic}", self.url) from None
            window = _Window(self.loop, s.max_pending_messages)
            cached = self._producers[topic] = _TopicProducer(topic, producer, window)
            return cached

    async def send(self, envelope: Envelope) -> str:
        """Send one message and wait for the broker's acceptance; returns its message id."""
        return await (await self.send_nowait(envelope))

    async def send_nowait(self, envelope: Envelope) -> asyncio.Future[str]:
        """Queue one message; returns once it is queued, with a future of its acceptance.

        Waits only when `max_pending_messages` sends are already in flight on the topic.
        """
        entry = await self._producer_for(self._names.full(envelope.topic))
        message = build_message(envelope)
        if self._settings.producer_name is not None:
            entry.check_numbering(_numbered(envelope))
        await entry.window.take(1)
        return self._hand_over(entry, [message]).future

    async def send_many(self, envelopes: Sequence[Envelope]) -> None:
        """Pipeline many sends (batched by the client); raise if any was not accepted."""
        groups: list[_Sends] = []
        start = 0
        while start < len(envelopes):  # one run of envelopes per topic, in their order
            topic = envelopes[start].topic
            end = start + 1
            while end < len(envelopes) and envelopes[end].topic == topic:
                end += 1
            groups += await self._send_run(topic, envelopes[start:end])
            start = end
        await asyncio.wait([g.future for g in groups])
        failed = sum(g.failed for g in groups)
        if failed:
            first = next(g.future.exception() for g in groups if g.failed)
            raise BrokerError(
                f"{failed} of {len(envelopes)} messages were not accepted by Pulsar "
                f"(first error: {first}); the others were sent, so retry only the batch "
                "if duplicates are acceptable"
            )

    async def _send_run(self, topic: str, envelopes: Sequence[Envelope]) -> list[_Sends]:
        """Hand the messages of one topic over in groups, as window slots allow."""
        entry = await self._producer_for(self._names.full(topic))
        messages = [build_message(e) for e in envelopes]  # a bad envelope fails before sending
        if self._settings.producer_name is not None:
            for envelope in envelopes:
                entry.check_numbering(_numbered(envelope))
        groups = []
        start = 0
        while start < len(messages):
            wanted = min(len(messages) - start, entry.window.group_size)
            taken = await entry.window.take(wanted)
            groups.append(self._hand_over(entry, messages[start:start + taken]))
            start += taken
        return groups

    def _hand_over(self, entry: _TopicProducer, messages: list[_pulsar.Message]) -> _Sends:
        """Give messages (their window slots already taken) to the client as one group."""
        group = _Sends(self, entry.window, entry.topic, len(messages))
        self._in_flight.add(group.future)
        group.future.add_done_callback(self._in_flight.discard)
        send_async, on_sent = entry.send_async, group.on_sent
        for message in messages:
            try:
                send_async(message, on_sent)
            except Exception as exc:  # not seen; settle the send so the group still completes
                log.error("pulsar: the client refused a send to %s: %s", entry.topic, exc)
                on_sent(pulsar.Result.UnknownError, None)
        return group

    async def close(self, timeout: float | None) -> None:
        """Wait for the sends in flight (nothing queued is lost), then close every producer."""
        producers, self._producers = self._producers, {}
        if self._in_flight:
            _done, unsettled = await asyncio.wait(set(self._in_flight), timeout=timeout)
            if unsettled:
                log.error("pulsar: %d groups of sends were not confirmed before closing; "
                          "their callers get an error", len(unsettled))
        for topic, entry in producers.items():
            try:
                await asyncio.wait_for(entry.producer.close(), timeout)
            except Exception as exc:
                log.warning("pulsar: could not close the producer of %s: %s", topic, exc)
