"""Writes a batch of rows in one transaction; a row the database refuses costs only itself.

Made for a batch subscriber (`Broker.subscribe_batch`): its handler gets a batch of messages,
writes their rows with `await writer.write(rows)` and returns the refused positions as
`BatchResult(reject=...)`, so one handler call is one transaction. If the write fails:

- because of some rows (the database refused their data: a data or integrity error), the
  batch is split in halves, and those again, until every good row is stored and each bad one
  is alone; `write()` returns the refused positions with the database's reason. `k` bad rows
  among `n` cost about `2k log2(n)` extra writes;
- for any other reason (the database is down, a timeout, a bug), `write()` raises that
  error: the broker layer holds the batch while the database is down (see `core.flow`) and
  redelivers it otherwise. Rows already stored by an earlier half are skipped as duplicates
  when they come back (the write must be idempotent).

Errors are logged without rows or SQL parameters. Each write is a span (`write batch`,
inside the batch's consumer span, which links to every message's producer span).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

from opentelemetry import metrics, trace

from brokerline.core.repeats import RepeatedLog
from brokerline.core.transient import describe_failure

T = TypeVar("T")
log = logging.getLogger(__name__)

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


class RowBatchWriter(Generic[T]):
    """`write(rows)` stores `rows` with the given `write` (one transaction per call)."""

    def __init__(self, write: Callable[[list[T]], Awaitable[Any]]) -> None:
        self._write = write
        self._refusals = RepeatedLog(log, logging.WARNING)

    async def write(self, rows: Sequence[T]) -> dict[int, str]:
        """Store `rows`; returns the refused ones (position -> the database's reason).

        Raises what the write raised when the failure is not a row's (the database is down).
        """
        if not rows:
            return {}
        _batch_rows.record(len(rows))
        with _tracer.start_as_current_span(
            "write batch", attributes={"db.operation.batch.size": len(rows)}
        ) as span:
            try:
                refused = await self._write_splitting(rows)
            except Exception as exc:
                span.set_status(trace.StatusCode.ERROR, describe_failure(exc))
                raise
            if refused:
                _refused_rows.add(len(refused))
                span.set_attribute("db.batch.refused_rows", len(refused))
                self._refusals.log(
                    "refused", "the database refused %d of %d rows of a batch (%s); "
                    "stored the others, dead-lettering the refused ones",
                    len(refused), len(rows), next(iter(refused.values())),
                )
            return refused

    async def _write_splitting(self, rows: Sequence[T]) -> dict[int, str]:
        """Write `rows`; on a row error, halves until each refused row is alone."""
        try:
            await self._write(list(rows))
            return {}
        except Exception as exc:
            if not is_row_error(exc):
                raise
            if len(rows) == 1:
                return {0: f"the database refused this row: {describe_failure(exc)}"}
        middle = len(rows) // 2
        refused = await self._write_splitting(rows[:middle])
        for index, reason in (await self._write_splitting(rows[middle:])).items():
            refused[middle + index] = reason
        return refused
