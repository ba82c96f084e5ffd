"""A pool of consumer workers with bounded concurrency and a draining stop.

Each worker fetches one item and handles it; while the subscription's `FlowControl` is paused
(a dependency is down) no worker fetches a new one. `stop()` cancels the workers that are waiting
for an item, lets the ones handling an item finish (within a timeout), then returns. Plugins
use it so that `close()` waits for in-flight handlers the same way on every broker.

A plugin whose client queues items in memory passes `poll` too: a plain call that returns the
next item or None, tried before the `fetch` coroutine, so an item already there costs no
coroutine. A worker yields to the event loop every `YIELD_EVERY` items: with items always
there and handlers that never suspend, it would otherwise never let other tasks run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from brokerline.core.flow import FlowControl

T = TypeVar("T")
log = logging.getLogger("broker")

YIELD_EVERY = 32  # items a worker handles back to back before letting other tasks run


class ConsumerLoop(Generic[T]):
    def __init__(
        self,
        fetch: Callable[[], Awaitable[T]],
        handle: Callable[[T], Awaitable[None]],
        *,
        concurrency: int,
        name: str,
        flow: FlowControl | None = None,
        poll: Callable[[], T | None] | None = None,
    ) -> None:
        self._fetch = fetch
        self._poll = poll
        self._flow = flow
        self._handle = handle
        self._concurrency = concurrency
        self._name = name
        self._busy: set[asyncio.Task[None]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    @property
    def in_flight(self) -> int:
        return len(self._busy)

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._work(), name=f"{self._name}-{i}")
            for i in range(self._concurrency)
        ]

    async def _work(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        flow, poll, handled = self._flow, self._poll, 0
        while not self._stopping:
            if flow is not None and flow.reason is not None:
                await flow.wait_open()
                continue  # stopping may have been decided meanwhile
            handled += 1
            if handled >= YIELD_EVERY:
                handled = 0
                await asyncio.sleep(0)
                continue  # stopping or a paused flow may have been decided meanwhile
            try:
                item = poll() if poll is not None else None
                if item is None:
                    item = await self._fetch()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a fetch error must not kill the worker: log, pause, retry
                log.warning("%s: fetch failed: %s", self._name, exc)
                await asyncio.sleep(0.5)
                continue
            self._busy.add(task)
            try:
                await self._handle(item)
            except Exception:  # the handle step decides outcomes; this is a plugin bug
                log.exception("%s: unexpected error while handling a message", self._name)
            finally:
                self._busy.discard(task)

    async def stop(self, timeout: float | None = None) -> None:
        """Stop fetching; wait up to `timeout` seconds for in-flight items, then cancel."""
        self._stopping = True
        for task in self._tasks:
            if task not in self._busy:
                task.cancel()
        pending = [t for t in self._tasks if not t.done()]
        if pending:
            _done, still = await asyncio.wait(pending, timeout=timeout)
            for task in still:
                log.warning("%s: handler still running after %ss; cancelling", self._name, timeout)
                task.cancel()
            for task in still:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._tasks = []
