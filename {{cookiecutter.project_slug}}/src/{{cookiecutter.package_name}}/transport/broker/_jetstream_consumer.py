"""A JetStream subscription: a pull consumer per group, settled with ack / nak(delay) / term.

- `group` is a durable consumer, named from the group and the topic (a group may read many
  topics of one stream); no group is an ephemeral consumer the server forgets when idle.
- The Dispatcher's outcome maps to: ack; nak with the backoff delay (the server redelivers
  and counts the delivery); term for a message moved to the dead-letter topic.
- `max_deliver` is `max_deliveries + 1`: the Dispatcher dead-letters at `max_deliveries`; the
  extra delivery lets it do so even when the last attempt died with the process.
- `max_ack_pending` is sized to the concurrency (in-flight handlers, plus room for the
  messages waiting out a nak delay), not the server's default of 1000.
- A handler running longer than half of `ack_wait` reports progress (`+WPI`), so a slow
  handler is not mistaken for a dead one; `ack_wait` is the time to notice a crashed consumer.
- Workers share one fetch of up to `concurrency` messages, taken in stream order, so the
  Dispatcher's per-key ordering holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
from collections import deque

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from ._nats_connection import split_headers
from .base import Delivery, InitialPosition, SubscribeOptions, Subscription
from .dispatch import Dispatcher
from .errors import BrokerError
from .runner import ConsumerLoop

log = logging.getLogger("broker.jetstream")

#: seconds one pull request waits on the server for messages (also how long close() may wait
#: for the last one: a message sent to a pull request nobody reads waits out ack_wait)
FETCH_WAIT = 1.0
#: an ephemeral consumer (no group) is removed by the server after this many idle seconds
EPHEMERAL_IDLE = 60.0


def durable_name(group: str, topic: str) -> str:
    """A valid, stable consumer name for (group, topic): readable, with a hash for uniqueness."""
    readable = re.sub(r"[^A-Za-z0-9_-]", "_", f"{group}__{topic}")[:48]
    digest = hashlib.sha1(f"{group}\0{topic}".encode()).hexdigest()[:8]
    return f"{readable}_{digest}"


def max_ack_pending(options: SubscribeOptions) -> int:
    return options.concurrency * 4 + 16


class JetStreamSubscription(Subscription):
    def __init__(
        self, topic: str, group: str | None, dispatcher: Dispatcher, options: SubscribeOptions,
        on_close: object,
    ) -> None:
        self.topic = topic
        self.group = group
        self._dispatcher = dispatcher
        self._options = options
        self._buffer: deque[Msg] = deque()
        self._fetching = asyncio.Lock()
        self._fetch: asyncio.Future[list[Msg]] | None = None
        self._psub: JetStreamContext.PullSubscription | None = None
        self._loop: ConsumerLoop[Msg] = ConsumerLoop(
            self._next, self._handle, concurrency=options.concurrency,
            name=f"jetstream:{topic}:{group or '-'}",
        )
        self._on_close = on_close
        self._closed = False

    async def start(self, js: JetStreamContext, stream: str) -> None:
        options = self._options
        config = ConsumerConfig(
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=options.ack_wait,
            max_deliver=options.max_deliveries + 1,
            max_ack_pending=max_ack_pending(options),
            deliver_policy=(
                DeliverPolicy.NEW
                if options.initial_position is InitialPosition.LATEST else DeliverPolicy.ALL
            ),
            inactive_threshold=None if self.group else EPHEMERAL_IDLE,
        )
        durable = durable_name(self.group, self.topic) if self.group else None
        try:
            self._psub = await js.pull_subscribe(
                self.topic, durable=durable, stream=stream, config=config
            )
        except nats.js.errors.APIError as exc:
            raise BrokerError(
                f"could not create the JetStream consumer for {self.topic!r} on stream "
                f"{stream} ({exc}); check that the stream's subjects include the topic"
            ) from exc
        self._loop.start()

    async def _next(self) -> Msg:
        assert self._psub is not None
        while True:
            if self._buffer:
                return self._buffer.popleft()
            async with self._fetching:
                if self._buffer:
                    continue
                # shielded: a worker cancelled by close() must not abandon a pull request
                # the server may still answer; close() collects its messages instead
                self._fetch = asyncio.ensure_future(
                    self._psub.fetch(self._options.concurrency, timeout=FETCH_WAIT)
                )
                self._buffer.extend(await asyncio.shield(self._collect(self._fetch)))

    @staticmethod
    async def _collect(fetch: asyncio.Future[list[Msg]]) -> list[Msg]:
        try:
            return await fetch
        except TimeoutError:
            return []

    async def _handle(self, msg: Msg) -> None:
        delivery = to_delivery(msg)
        keep_alive = _ProgressReporter(msg, self._options.ack_wait / 2)
        try:
            outcome = await self._dispatcher.process(delivery)
        except asyncio.CancelledError:  # stopped mid-handler: hand it back for redelivery now
            with contextlib.suppress(Exception):
                await msg.nak()
            raise
        finally:
            keep_alive.stop()
        try:
            if outcome.dead_lettered:
                await msg.term()
            elif outcome.acked:
                await msg.ack()
            else:
                await msg.nak(delay=outcome.delay)
        except nats.errors.Error as exc:  # the server redelivers it after ack_wait
            log.warning("could not settle message %s of %s: %s", delivery.message_id,
                        self.topic, exc)

    async def close(self, timeout: float | None = None) -> None:
        if self._closed:
            return
        self._closed = True
        await self._loop.stop(timeout)
        if self._fetch is not None and not self._fetch.done():
            self._buffer.extend(await self._collect(self._fetch))
        while self._buffer:  # fetched but never handled: give them back at once
            with contextlib.suppress(Exception):
                await self._buffer.popleft().nak()
        if self._psub is not None:
            with contextlib.suppress(Exception):
                await self._psub.unsubscribe()
        self._on_close(self)  # type: ignore[operator]


class _ProgressReporter:
    """Tells the server, every `period` seconds, that a message is still being handled."""

    def __init__(self, msg: Msg, period: float) -> None:
        self._msg = msg
        self._period = period
        self._loop = asyncio.get_running_loop()
        self._timer = self._loop.call_later(period, self._tick)
        self._task: asyncio.Task[None] | None = None

    def _tick(self) -> None:
        self._task = self._loop.create_task(self._report())
        self._timer = self._loop.call_later(self._period, self._tick)

    async def _report(self) -> None:
        with contextlib.suppress(Exception):
            await self._msg.in_progress()

    def stop(self) -> None:
        self._timer.cancel()


def to_delivery(msg: Msg) -> Delivery:
    headers, key, msg_id = split_headers(msg.headers)
    meta = msg.metadata
    return Delivery(
        topic=msg.subject,
        payload=msg.data,
        key=key,
        headers=headers,
        message_id=msg_id or f"{meta.stream}:{meta.sequence.stream}",
        redelivery_count=max(0, meta.num_delivered - 1),
        publish_time=meta.timestamp,
    )
