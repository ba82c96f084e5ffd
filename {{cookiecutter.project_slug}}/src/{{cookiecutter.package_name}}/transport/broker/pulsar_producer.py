"""Pulsar producers: one per topic, cached, with back-pressure instead of silent drops.

The client's `send_async` fails a message with `ProducerQueueIsFull` when more than
`max_pending_messages` are in flight and `block_if_queue_full` is off; blocking instead would
stall the event loop thread. So each producer admits at most `max_pending_messages` sends
through an `asyncio.Semaphore`: a caller that would overflow the queue waits (asynchronously)
for a slot, and every send's result is awaited and raised, never dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pulsar.asyncio import Client, Producer

from .base import Envelope
from .errors import BrokerError
from .pulsar_client import BATCHING, COMPRESSION, TopicNames, choice, explain
from .settings import PulsarSettings

log = logging.getLogger("broker.pulsar")


@dataclass(slots=True)
class PulsarEnvelope(Envelope):
    """An envelope with the Pulsar-only message fields.

    `key` (from `Envelope`) is the partition / sharding key; `ordering_key` overrides it for
    Key_Shared dispatch; `deliver_at` is an absolute delayed-delivery time.
    """

    ordering_key: str | None = None
    event_time: datetime | None = None
    deliver_at: datetime | None = None


def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def send_arguments(envelope: Envelope) -> dict[str, Any]:
    """The keyword arguments of `Producer.send` for one envelope."""
    kwargs: dict[str, Any] = {"properties": dict(envelope.headers)}
    if envelope.key is not None:
        kwargs["partition_key"] = envelope.key
    if envelope.delay is not None and envelope.delay > 0:
        kwargs["deliver_after"] = timedelta(seconds=envelope.delay)
    if isinstance(envelope, PulsarEnvelope):
        if envelope.ordering_key is not None:
            kwargs["ordering_key"] = envelope.ordering_key
        if envelope.event_time is not None:
            kwargs["event_timestamp"] = _millis(envelope.event_time)
        if envelope.deliver_at is not None:
            kwargs["deliver_at"] = _millis(envelope.deliver_at)
    return kwargs


class _TopicProducer:
    """One cached producer and its in-flight limit."""

    def __init__(self, producer: Producer, max_pending: int) -> None:
        self.producer = producer
        self.slots = asyncio.Semaphore(max_pending)


class ProducerPool:
    """Creates producers on first use, one per topic; `close()` flushes and closes them all."""

    def __init__(
        self, client: Client, settings: PulsarSettings, names: TopicNames, url: str
    ) -> None:
        self._client = client
        self._settings = settings
        self._names = names
        self._url = url
        self._producers: dict[str, _TopicProducer] = {}
        self._creating: dict[str, asyncio.Lock] = {}
        self._in_flight: set[asyncio.Future[str]] = set()  # sends not yet settled
        self._compression = choice(COMPRESSION, settings.compression, "compression")
        self._batching_type = choice(BATCHING, settings.batching_type, "batching_type")

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
                    send_timeout_millis=int(s.send_timeout * 1000),
                    compression_type=self._compression,
                    max_pending_messages=s.max_pending_messages,
                    block_if_queue_full=False,  # never block the loop; the semaphore waits
                    batching_enabled=s.batching,
                    batching_max_messages=s.batching_max_messages,
                    batching_max_allowed_size_in_bytes=s.batching_max_bytes,
                    batching_max_publish_delay_ms=s.batching_max_delay_ms,
                    batching_type=self._batching_type,
                )
            except Exception as exc:
                raise explain(exc, f"creating a producer for {topic}", self._url) from None
            cached = self._producers[topic] = _TopicProducer(producer, s.max_pending_messages)
            return cached

    async def send(self, envelope: Envelope) -> str:
        """Send one message and wait for the broker's acceptance; returns its message id.

        No explicit flush: the client's `flush_async` takes the producer's lock while holding
        the GIL and can deadlock against the I/O thread that completes sends. A short
        batching delay (`batching_max_delay_ms`, 1 ms by default) bounds the wait instead.
        """
        return await (await self.send_nowait(envelope))

    async def send_nowait(self, envelope: Envelope) -> asyncio.Future[str]:
        """Queue one message; returns once it is queued, with a future of its acceptance.

        Waits only when `max_pending_messages` sends are already in flight on the topic.
        """
        topic = self._names.full(envelope.topic)
        entry = await self._producer_for(topic)
        kwargs = send_arguments(envelope)
        await entry.slots.acquire()
        task = asyncio.ensure_future(entry.producer.send(envelope.payload, **kwargs))
        result: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        def settle(done: asyncio.Future[Any]) -> None:
            entry.slots.release()
            if result.done():
                return
            if done.cancelled():
                result.set_exception(BrokerError(f"sending to {topic} was cancelled"))
            elif (exc := done.exception()) is not None:
                result.set_exception(explain(exc, f"sending to {topic}", self._url))
            else:
                result.set_result(str(done.result()))

        task.add_done_callback(settle)
        self._in_flight.add(result)
        result.add_done_callback(self._in_flight.discard)
        return result

    async def send_many(self, envelopes: Sequence[Envelope]) -> None:
        """Pipeline many sends (batched by the client); raise if any was not accepted."""
        futures = [await self.send_nowait(e) for e in envelopes]
        results = await asyncio.gather(*futures, return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            raise BrokerError(
                f"{len(failures)} of {len(envelopes)} messages were not accepted by Pulsar "
                f"(first error: {failures[0]}); the others were sent, so retry only the batch "
                "if duplicates are acceptable"
            )

    async def close(self, timeout: float | None) -> None:
        """Flush every producer (nothing buffered is lost), then close it."""
        producers, self._producers = self._producers, {}
        # Wait for the sends in flight instead of calling the client's flush, which can block
        # the event loop (see `send`); with a 1 ms batching delay they settle by themselves.
        if self._in_flight:
            _done, unsettled = await asyncio.wait(set(self._in_flight), timeout=timeout)
            if unsettled:
                log.error("pulsar: %d sends were not confirmed before closing; their callers "
                          "get an error", len(unsettled))
        for topic, entry in producers.items():
            try:
                await asyncio.wait_for(entry.producer.close(), timeout)
            except Exception as exc:
                log.warning("pulsar: could not close the producer of %s: %s", topic, exc)
