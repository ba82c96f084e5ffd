"""Gathers items into batches written in one transaction: up to `max_size`, or `max_delay`.

`await writer.add(item)` returns once the batch holding the item is written, so a subscriber
handler that awaits it acks only stored events. If the write fails:

- because of some rows (the database refused their data: a data or integrity error), the
  batch is split in halves, and those again, until every good row is stored and each bad one
  is alone: its `add()` raises `Reject` with the database's reason (the message is
  dead-lettered); the others return. One bad row costs only itself, and `k` bad rows among
  `n` cost about `2k log2(n)` extra writes;
- for any other reason (the database is down, a timeout, a bug), every `add()` of the batch
  raises that error: the broker layer holds the messages while the database is down (see
  `transport/broker/flow.py`) and redelivers them otherwise. Rows already stored by an
  earlier half are skipped as duplicates when they come back.

One batch is written at a time (SQLite has a single writer, and it keeps transactions short on
PostgreSQL too). Errors are logged without rows or SQL parameters.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

from opentelemetry import metrics, trace

from brokerline.core import Reject
from brokerline.core.repeats import RepeatedLog
from brokerline.core.transient import describe_failure

T = TypeVar("T")
log = logging.getLogger(__name__)

# One write serves many messages, each with its own trace: the write's span links to them all.
_tracer = trace.get_tracer(__name__)
_batch_rows = metrics.get_meter(__name__).create_histogram(
    "db.batch.size", "{row}", "Rows per batched write",
    explicit_bucket_boundaries_advisory=[1, 2, 5, 10, 20, 50, 100, 200, 500, 1000])
_refused_rows = metrics.get_meter(__name__).create_counter(
    "db.batch.refused_rows", "{row}", "Rows the database refused (dead-lettered)")

#: SQLSTATE classes of errors caused by the row's data: 22 data exception, 23 integrity
ROW_SQLSTATE_CLASSES = ("22", "23")


def is_row_error(exc: BaseException) -> bool:
    """Whether the database refused the data of a row (not the connection, not the SQL)."""
    sa = sys.modules.get("sqlalchemy.exc")
    if sa is not None and isinstance(exc, (sa.DataError, sa.IntegrityError)):
        return True
    orig = getattr(exc, "orig", None)
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if isinstance(sqlstate, str) and sqlstate[:2] in ROW_SQLSTATE_CLASSES:
        return True
    # a driver converting a value it cannot send (e.g. text it cannot encode)
    return isinstance(exc, (ValueError, TypeError, OverflowError)) or isinstance(
        orig, (ValueError, TypeError, OverflowError)
    )


class _Batch(Generic[T]):
    def __init__(self) -> None:
        self.items: list[T] = []
        self.links: list[trace.Link] = []  # the span of each handler waiting for this batch
        #: resolves to the refused rows: index in `items` -> the database's reason
        self.written: asyncio.Future[dict[int, str]] = (
            asyncio.get_running_loop().create_future())


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
        self._refusals = RepeatedLog(log, logging.WARNING)

    async def add(self, item: T) -> None:
        """Returns once `item` is stored; raises `Reject` if the database refuses it."""
        batch = self._open
        if batch is None:
            batch = self._open = _Batch()
            self._timer = asyncio.get_running_loop().call_later(self.max_delay, self._seal)
        index = len(batch.items)
        batch.items.append(item)
        span = trace.get_current_span()
        if span.is_recording():  # a link is only kept by a recorded span
            batch.links.append(trace.Link(span.get_span_context()))
        if len(batch.items) >= self.max_size:
            self._seal()
        # shield: a cancelled handler must not cancel the write the other items wait for
        refused = await asyncio.shield(batch.written)
        if refused and index in refused:
            raise Reject(refused[index])

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
                    refused = await self._write_splitting(batch.items)
                except Exception as exc:
                    span.set_status(trace.StatusCode.ERROR, describe_failure(exc))
                    batch.written.set_exception(exc)
                    batch.written.exception()  # retrieved: handlers re-raise it, none is lost
                    return
                if refused:
                    _refused_rows.add(len(refused))
                    span.set_attribute("db.batch.refused_rows", len(refused))
                    self._refusals.log(
                        "refused", "the database refused %d of %d rows of a batch (%s); "
                        "stored the others, dead-lettering the refused ones",
                        len(refused), len(batch.items), next(iter(refused.values())),
                    )
                batch.written.set_result(refused)

    async def _write_splitting(self, items: Sequence[T]) -> dict[int, str]:
        """Write `items`; on a row error, halves until each refused row is alone."""
        try:
            await self._write(list(items))
            return {}
        except Exception as exc:
            if not is_row_error(exc):
                raise
            if len(items) == 1:
                return {0: f"the database refused this row: {describe_failure(exc)}"}
        middle = len(items) // 2
        refused = await self._write_splitting(items[:middle])
        for index, reason in (await self._write_splitting(items[middle:])).items():
            refused[middle + index] = reason
        return refused

    async def flush(self) -> None:
        """Write what is open now and wait for every write in progress."""
        self._seal()
        if self._writing:
            with contextlib.suppress(Exception):
                await asyncio.gather(*self._writing)
