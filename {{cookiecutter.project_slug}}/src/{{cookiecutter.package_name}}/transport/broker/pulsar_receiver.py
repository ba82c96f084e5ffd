"""Receiving from a Pulsar consumer on the event loop, without a future per message.

`pulsar.asyncio.Consumer.receive` costs a future and a thread-safe event-loop wakeup (a
self-pipe write) per message; with one such receive per worker the framework handled about a
tenth of what a plain blocking `receive()` loop does. The client already prefetches messages
into its receiver queue (`receiver_queue_size`), so a `Receiver` takes them from there with the
binding's non-blocking `receive(0)`, on the event-loop thread, and only when that queue is empty
does it ask for a wakeup: one `receive_async` whose callback hands the next message to the loop.
Under load nearly every message is taken without touching a future or the self-pipe.

Concurrency: `concurrency` workers, each takes a message, handles it, takes the next. A worker
that finds nothing parks; the one that takes a message wakes one parked worker, so a burst
spreads over as many workers as it has messages. Messages are taken in arrival order and each
worker starts handling at once (the Dispatcher queues per-key order before its first await);
while the wakeup receive is pending nobody polls, so its message cannot be overtaken.

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

from .runner import stop_workers

log = logging.getLogger("broker.pulsar")

OK = pulsar.Result.Ok
YIELD_EVERY = 32  # messages a worker handles back to back before letting other tasks run
RETRY_PAUSE = 0.5  # seconds before receiving again after the client reported an error


class Receiver:
    """A pool of workers that take messages from one consumer and handle them."""

    def __init__(
        self,
        consumer: _pulsar.Consumer,
        handle: Callable[[_pulsar.Message], Awaitable[None]],
        *,
        concurrency: int,
        name: str,
    ) -> None:
        self._consumer = consumer
        self._handle = handle
        self._concurrency = concurrency
        self._name = name
        self._loop = asyncio.get_running_loop()
        self._ready: deque[_pulsar.Message] = deque()  # what the wakeup receive delivered
        self._parked: deque[asyncio.Future[None]] = deque()
        self._armed = False  # a wakeup receive is pending in the client
        self._busy: set[asyncio.Task[None]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    @property
    def in_flight(self) -> int:
        return len(self._busy)

    def start(self) -> None:
        self._tasks = [
            self._loop.create_task(self._work(), name=f"{self._name}-{i}")
            for i in range(self._concurrency)
        ]

    # -- taking messages ----------------------------------------------------------------------
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
        if result == OK:
            self._ready.append(message)
            self._wake_one()
            return
        log.warning("%s: receive failed (%s); retrying in %.1fs", self._name, result.name,
                    RETRY_PAUSE)
        self._loop.call_later(RETRY_PAUSE, self._wake_one)

    # -- handling -----------------------------------------------------------------------------
    async def _work(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        streak = 0
        while not self._stopping:
            try:
                message = self._take()
            except Exception as exc:  # e.g. the client lost the consumer: log, pause, retry
                log.warning("%s: receive failed: %s", self._name, exc)
                await asyncio.sleep(RETRY_PAUSE)
                continue
            if message is None:
                streak = 0
                await self._park()
                continue
            if self._parked:  # there may be more: let one more worker look
                self._wake_one()
            self._busy.add(task)
            try:
                await self._handle(message)
            except Exception:  # the handle step decides outcomes; this is a plugin bug
                log.exception("%s: unexpected error while handling a message", self._name)
            finally:
                self._busy.discard(task)
            streak += 1
            if streak >= YIELD_EVERY:  # handlers that never suspend must not starve the loop
                streak = 0
                await asyncio.sleep(0)

    async def stop(self, timeout: float | None = None) -> None:
        """Stop taking messages; wait up to `timeout` for the handlers running, then cancel."""
        self._stopping = True
        await stop_workers(self._tasks, self._busy, timeout, self._name)
        self._tasks = []
