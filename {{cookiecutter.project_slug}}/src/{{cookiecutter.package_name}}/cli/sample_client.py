"""A gRPC client for the sample: posts reports and counts what the saver stored."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
import uuid
from collections.abc import AsyncIterator

import grpc
from brokerline.config import ConfigError, DatabaseConfig
from brokerline.sql.database import create_engine
from brokerline.telemetry import grpc_client_interceptors
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..api.report.v1 import report_pb2, report_pb2_grpc
from ..data.models import RealtimeWarehousing

RETRIES = 5


async def _post_one(stub: report_pb2_grpc.ReportServiceStub, n: int) -> bool:
    # one request id per report, the same on every retry: a retry is stored once
    request = report_pb2.PostReportRequest(
        user_id=f"user-{n % 50}", event_name="page_view",
        content=json.dumps({"page": f"/item/{n}"}), request_id=uuid.uuid4().hex,
    )
    for attempt in range(RETRIES):
        try:
            await stub.PostReport(request, timeout=10)
            return True
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                print(f"report {n} refused: {exc.code().name}: {exc.details()}", file=sys.stderr)
                return False
            await asyncio.sleep(0.2 * 2**attempt)
    print(f"report {n} failed after {RETRIES} attempts (server unavailable)", file=sys.stderr)
    return False


async def post_reports(target: str, count: int, concurrency: int, show_progress: bool) -> int:
    """Post `count` reports with `concurrency` calls in flight; returns how many were accepted."""
    accepted = 0
    next_n = 0
    step = max(count // 10, 1)
    started = time.perf_counter()
    async with grpc.aio.insecure_channel(
        target, interceptors=grpc_client_interceptors()
    ) as channel:
        try:
            await asyncio.wait_for(channel.channel_ready(), 15)
        except TimeoutError:
            raise OSError(
                f"no report service answers at {target}; start `serve report` or set --target"
            ) from None
        stub = report_pb2_grpc.ReportServiceStub(channel)

        async def worker() -> None:
            nonlocal accepted, next_n
            while next_n < count:
                n, next_n = next_n, next_n + 1
                if await _post_one(stub, n):
                    accepted += 1
                    if show_progress and accepted % step == 0:
                        print(f"posted {accepted}/{count}", file=sys.stderr, flush=True)

        await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, count)))))
    if show_progress:
        elapsed = time.perf_counter() - started
        print(f"posted {accepted} of {count} reports in {elapsed:.2f}s "
              f"({accepted / max(elapsed, 1e-9):.0f}/s)", file=sys.stderr)
    return accepted


@contextlib.asynccontextmanager
async def _connected(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection, or one sentence naming the database and the setting to check."""
    try:
        connection = await engine.connect()
    except (SQLAlchemyError, OSError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise ConfigError(
            f"cannot open the database at {engine.url.render_as_string(hide_password=True)} "
            f"({type(exc).__name__}: {reason}); check database.url (DATABASE_URL): its user, "
            "password and database name, and that the server runs"
        ) from None
    try:
        yield connection
    finally:
        await connection.close()


async def count_rows(db: DatabaseConfig, expect: int | None = None, timeout: float = 60.0) -> int:
    """Rows in the report table; with `expect`, wait (up to `timeout`) until there are as many."""
    engine = create_engine(db)
    deadline = time.monotonic() + timeout
    try:
        while True:
            async with _connected(engine) as conn:
                try:
                    rows = int(await conn.scalar(
                        select(func.count()).select_from(RealtimeWarehousing)) or 0)
                except Exception:  # table not created yet: the saver has not started
                    rows = 0
            if expect is None or rows >= expect or time.monotonic() > deadline:
                return rows
            await asyncio.sleep(0.2)
    finally:
        await engine.dispose()
