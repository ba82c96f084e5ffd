"""Gathers items into batches written in one transaction: up to `max_size`, or `max_delay`.

`await writer.add(item)` returns once the batch holding the item is written, and raises if the
write failed, so a subscriber handler that awaits it acks only stored events and a failed
batch is redelivered whole. One batch is written at a time (SQLite has a single writer, and
it keeps transactions short on PostgreSQL too).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from opentelemetry import metrics, trace

T = TypeVar("T")

# One write serves many messages, each with its own trace: the write's span links to them all.
_tracer = trace.get_tracer(__name__)
_batch_rows = metrics.get_meter(__name__).create_histogram(
    "db.batch.size", "{row}", "Rows per batched write",
    explicit_bucket_boundaries_advisory=[1, 2, 5, 10, 20, 50, 100, 200, 500, 1000])


class _Batch(Generic[T]):
    def __init__(self) -> None:
        self.items: list[T] = []
        self.links: list[trace.Link] = []  # the span of each handler waiting for this batch
        self.written: asyncio.Future[None] = asyncio.get_running_loop().create_future()


class BatchWriter(Generic[T]):
    def __init__(
        self,
        write: Callable[[list[T]], Awaitable[Any]],
        *,
        max_size: int = 256,
        max_delay: float = 0.02,
    ) -> None:
        if max_size < 1:
            raise ValueError(f"max_size must be at least 1, got {max_size}")
        self._write = write
        self.max_size = max_size
        self.max_delay = max_delay
        self._open: _Batch[T] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._write_lock = asyncio.Lock()
        self._writing: set[asyncio.Task[None]] = set()

    async def add(self, item: T) -> None:
        batch = self._open
        if batch is None:
            batch = self._open = _Batch()
            self._timer = asyncio.get_running_loop().call_later(self.max_delay, self._seal)
        batch.items.append(item)
        span = trace.get_current_span()
        if span.is_recording():  # a link is only kept by a recorded span
            batch.links.append(trace.Link(span.get_span_context()))
        if len(batch.items) >= self.max_size:
            self._seal()
        # shield: a cancelled handler must not cancel the write the other items wait for
        await asyncio.shield(batch.written)

    def _seal(self) -> None:
        """Close the open batch and schedule its write."""
        batch, self._open = self._open, None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if batch is None:
            return
        task = asyncio.create_task(self._write_batch(batch))
        self._writing.add(task)
        task.add_done_callback(self._writing.discard)

    async def _write_batch(self, batch: _Batch[T]) -> None:
        async with self._write_lock:
            _batch_rows.record(len(batch.items))
            size = {"db.operation.batch.size": len(batch.items)}
            with _tracer.start_as_current_span("write batch", links=batch.links,
                                               attributes=size) as span:
                try:
                    await self._write(batch.items)
                except Exception as exc:
                    span.record_exception(exc)
                    span.set_status(trace.StatusCode.ERROR, type(exc).__name__)
                    batch.written.set_exception(exc)
                    batch.written.exception()  # retrieved: handlers re-raise it, none is lost
                else:
                    batch.written.set_result(None)

    async def flush(self) -> None:
        """Write what is open now and wait for every write in progress."""
        self._seal()
        if self._writing:
            with contextlib.suppress(Exception):
                await asyncio.gather(*self._writing)
