"""Receiving from a Pulsar consumer on the event loop, without a future per message.

`pulsar.asyncio.Consumer.receive` costs a future and a thread-safe event-loop wakeup (a
self-pipe write) per message; with one such receive per worker the framework handled about a
tenth of what a plain blocking `receive()` loop does. The client already prefetches messages
into its receiver queue (`receiver_queue_size`), so a `Receiver` takes them from there with the
binding's non-blocking `receive(0)`, on the event-loop thread, and only when that queue is empty
does it ask for a wakeup: one `receive_async` whose callback hands the next message to the loop.
Under load nearly every message is taken without touching a future or the self-pipe.

Concurrency: the `ConsumerLoop`'s `concurrency` workers, each takes a message, handles it, takes
the next (a failed receive is logged and retried by the loop). A message already there is taken
by a plain call (`poll`), without a coroutine; a worker that finds nothing parks (`_next`), and
the one that takes a message wakes one parked worker, so a burst spreads over as many workers
as it has messages. Messages are taken in arrival order and each
worker starts handling at once (the Dispatcher queues per-key order before its first await);
while the wakeup receive is pending nobody polls, so its message cannot be overtaken.

A batch subscription does not start the Receiver's own workers: its workers call
`next_batch`, which takes a first message as above, then whatever else the receiver queue
holds, waiting at most `max_wait` for more, up to `max_size`.

`stop()` lets the workers that are handling a message finish (within a timeout) and cancels
the others; a message the pending wakeup delivers after that is left unacknowledged, and the
broker redelivers it when the consumer closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable

import _pulsar
import pulsar

from brokerline.core.consumer_loop import ConsumerLoop
from brokerline.core.flow import FlowControl
from brokerline.pulsar.client import OK_VALUE

log = logging.getLogger("broker.pulsar")

RETRY_PAUSE = 0.5  # seconds before receiving again after the client reported an error


class Receiver(ConsumerLoop[_pulsar.Message]):
    """A `ConsumerLoop` whose workers take their messages from one Pulsar consumer."""

    def __init__(
        self,
        consumer: _pulsar.Consumer,
        handle: Callable[[_pulsar.Message], Awaitable[None]],
        *,
        concurrency: int,
        name: str,
        flow: FlowControl | None = None,
    ) -> None:
        super().__init__(
            self._next, handle, concurrency=concurrency, name=name, flow=flow, poll=self._poll
        )
        self._consumer = consumer
        self._loop = asyncio.get_running_loop()
        self._ready: deque[_pulsar.Message] = deque()  # what the wakeup receive delivered
        self._parked: deque[asyncio.Future[None]] = deque()
        self._armed = False  # a wakeup receive is pending in the client

    def _poll(self) -> _pulsar.Message | None:
        """The next message if there is one now, else None."""
        message = self._take()
        if message is not None and self._parked:  # there may be more: let one more worker look
            self._wake_one()
        return message

    async def _next(self) -> _pulsar.Message:
        """The next message; parks the worker while the client's queue is empty."""
        while True:
            message = self._poll()
            if message is not None:
                return message
            await self._park()

    async def next_batch(self, max_size: int, max_wait: float) -> list[_pulsar.Message]:
        """Up to `max_size` messages: the next one, then what arrives within `max_wait`."""
        batch = [await self._next()]
        try:
            deadline: float | None = None
            while len(batch) < max_size:
                message = self._take()
                if message is not None:
                    batch.append(message)
                    continue
                if deadline is None:
                    deadline = self._loop.time() + max_wait
                remaining = deadline - self._loop.time()
                if remaining <= 0:
                    break
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await self._park()
                    continue
                break
        except asyncio.CancelledError:  # stopping: hand back what this batch took
            for message in batch:
                self._consumer.negative_acknowledge(message)
            raise
        return batch

    def _take(self) -> _pulsar.Message | None:
        """The next message in arrival order, or None when there is none yet."""
        if self._ready:
            return self._ready.popleft()
        if self._armed:  # the wakeup receive gets the next message: polling would overtake it
            return None
        try:
            return self._consumer.receive(0)  # non-blocking: the prefetched receiver queue
        except pulsar.Timeout:
            return None

    async def _park(self) -> None:
        """Wait until a message may be there; the first to park asks the client for a wakeup."""
        if not self._armed:
            self._armed = True
            self._consumer.receive_async(self._received_in_thread)
        waiter = self._loop.create_future()
        self._parked.append(waiter)
        await waiter

    def _wake_one(self) -> None:
        while self._parked:
            waiter = self._parked.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _received_in_thread(self, result: pulsar.Result, message: _pulsar.Message) -> None:
        """The wakeup receive's callback: the client's thread (or this one, if it was quick)."""
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is left to tell
            self._loop.call_soon_threadsafe(self._received, result, message)

    def _received(self, result: pulsar.Result, message: _pulsar.Message) -> None:
        self._armed = False
        if self._stopping:  # left unacknowledged: redelivered when the consumer closes
            return
        if result.value == OK_VALUE:
            self._ready.append(message)
            self._wake_one()
            return
        log.warning("%s: receive failed (%s); retrying in %.1fs", self._name, result.name,
                    RETRY_PAUSE)
        self._loop.call_later(RETRY_PAUSE, self._wake_one)
