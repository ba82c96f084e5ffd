"""The saver end to end (gRPC PostReport -> JetStream -> rows) vs a raw SQLAlchemy batch insert.

The saver is the generated service's: a batch subscriber (one handler call and one
transaction per batch of up to `saver.batch_size` events). Its CPU per message is read from
/proc for the saver's processes (the supervisor and its workers) over the timed part.

Every case starts from an empty stream with no consumers (`empty_stream`): the service's
stream (its default config: EVENTS on events.>) also holds what the ingest group posted and
what an earlier saver case left, and the saver's durable would resume or replay it. A case
whose stored rows differ from what it posted reports no rate, only FAILED and the counts.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from brokerline.core.embedded import free_port, wait_for_port
from common import Result, Timed, throughput
from report_pipeline.cli.sample_client import post_reports
from report_pipeline.conf import TopicsConfig
from report_pipeline.data.models import Base, RealtimeWarehousing
from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import create_async_engine
from streams import empty_stream, stream_messages

BATCH = 256  # the saver's default batch_size
PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
REPORT_TOPIC = TopicsConfig().report  # the topic the saver stores rows from
SETTLE = 0.5  # seconds to wait after the last expected row, to catch rows beyond it
MIN_TIMED = 0.5  # the share of a drain's rows that must be stored in the timed part


def checked(result: Result, stored: int, expected: int, what: str) -> Result:
    """The result, or, if the rows stored are not the rows expected, one without a rate."""
    if stored == expected:
        return result
    failure = f"FAILED: stored {stored} rows of {expected} {what}; no rate"
    print(f"{result.case}, {result.side}: {failure}", flush=True)
    return Result(result.case, result.side, None, note=failure + (
        f"; {result.note}" if result.note else ""))


async def pg_reachable() -> str | None:
    """None when PostgreSQL answers, else the reason to skip it."""
    try:
        engine = create_async_engine(PG_URL)
        try:
            async with engine.connect() as conn:
                await conn.execute(select(1))
        finally:
            await engine.dispose()
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means: skip PostgreSQL
        return f"PostgreSQL at 127.0.0.1:5432/test not reachable ({type(exc).__name__}: {exc})"


async def reset_tables(url: str) -> None:
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
        for table in reversed(Base.metadata.sorted_tables):
            await conn.execute(delete(table))
    await engine.dispose()


async def count_rows(url: str) -> int:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return int(await conn.scalar(select(func.count()).select_from(RealtimeWarehousing)))
    except Exception:  # noqa: BLE001 - no table yet: nothing stored
        return 0
    finally:
        await engine.dispose()


async def raw_insert(url: str, n: int, label: str) -> Result:
    """The same rows, inserted with plain SQLAlchemy Core executemany in batches of BATCH."""
    await reset_tables(url)
    engine = create_async_engine(url)
    if url.startswith("sqlite"):
        from sqlalchemy import event

        @event.listens_for(engine.sync_engine, "connect")
        def _wal(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

    now = datetime.now(UTC)
    rows = [
        {"event_id": f"raw-{i:012d}", "user_id": f"user-{i % 97}", "event_name": "page_view",
         "report_data": "x" * 16, "create_time": now, "saved_at": now}
        for i in range(n)
    ]
    stmt = insert(RealtimeWarehousing)
    with Timed() as t:  # CPU: this process (aiosqlite's thread included), not the server
        for i in range(0, n, BATCH):
            async with engine.begin() as conn:
                await conn.execute(stmt, rows[i:i + BATCH])
    await engine.dispose()
    return Result(f"saver vs insert ({label})", "raw SQLAlchemy insert", t.rate(n),
                  cpu_us=t.cpu_us(n))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def children_of(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by `pid` and its children (the workers of
    `serve saver --workers N` are children of the supervisor), from /proc/<pid>/stat."""
    ticks = 0
    for each in [pid, *children_of(pid)]:
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return ticks / CLOCK_TICKS


async def saver_end_to_end(
    nats_url: str, db_url: str, label: str, n: int, workers: int, project: Path
) -> tuple[Result, float]:
    """Post n reports over gRPC to `serve report`; time until the saver(s) stored them all."""
    await reset_tables(db_url)
    await empty_stream(nats_url, REPORT_TOPIC)
    work = Path(tempfile.mkdtemp(prefix="bench-saver-"))
    grpc_address = f"127.0.0.1:{free_port()}"
    env = {**os.environ, "BROKER_TYPE": "jetstream", "BROKER_ADDRESS": nats_url,
           "DATABASE_URL": db_url, "GRPC_ADDRESS": grpc_address, "LOG_LEVEL": "WARNING"}
    base = [sys.executable, "-m", "report_pipeline", "serve"]
    procs = []
    try:
        with (open(work / "saver.log", "wb") as slog,  # noqa: ASYNC230 - before timing
              open(work / "report.log", "wb") as rlog):  # noqa: ASYNC230
            saver_argv = [*base, "saver"] + (["--workers", str(workers)] if workers > 1 else [])
            procs.append(subprocess.Popen(  # noqa: ASYNC220 - started before timing
                saver_argv, env=env, cwd=project, stdout=slog,
                                          stderr=subprocess.STDOUT))
            procs.append(subprocess.Popen(  # noqa: ASYNC220
                [*base, "report"], env=env, cwd=project, stdout=rlog,
                                          stderr=subprocess.STDOUT))
        wait_for_port(int(grpc_address.rsplit(":", 1)[1]), 60, procs[1], what="serve report")
        await asyncio.sleep(2.0)  # the saver(s) subscribe and sit idle
        savers = children_of(procs[0].pid) if workers > 1 else [procs[0].pid]
        idle_rss = max(rss_mb(p) for p in savers)
        t0 = time.perf_counter()
        ok = await post_reports(grpc_address, n, 64, False)
        posted = time.perf_counter() - t0
        deadline = time.monotonic() + 120
        stored = 0
        while time.monotonic() < deadline:
            stored = await count_rows(db_url)
            if stored >= ok:
                break
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - t0
        await asyncio.sleep(SETTLE)
        stored = await count_rows(db_url)
        note = f"gRPC posting alone {ok / posted:,.0f}/s; idle RSS {idle_rss:.0f} MB"
        side = f"saver, {workers} worker{'s' if workers > 1 else ''}"
        result = Result(f"saver vs insert ({label})", side, throughput(stored, elapsed),
                        note=note, offered_per_s=ok / posted)
        return checked(result, stored, n, f"posted ({ok} accepted over gRPC)"), idle_rss
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()


async def saver_drain(
    nats_url: str, db_url: str, label: str, n: int, project: Path, workers: int = 1
) -> Result:
    """The saver alone: n events already on JetStream; time from its start to the last row.

    Unlike the end-to-end case this is not capped by the gRPC client, so it compares the
    saver with its raw stages (JetStream consume, batch insert) as the target means.
    """
    from brokerline.jetstream import JetStreamBroker
    from brokerline.nats import NatsSettings
    from report_pipeline.api.events.v1.events_pb2 import RealTimeWarehousingData

    await reset_tables(db_url)
    await empty_stream(nats_url, REPORT_TOPIC)
    publisher = JetStreamBroker(NatsSettings(servers=[nats_url]))
    await publisher.connect()
    run = uuid.uuid4().hex[:8]  # ids of this case only
    try:
        now_ms = int(time.time() * 1000)
        for start in range(0, n, 1000):
            await publisher.publish_batch(REPORT_TOPIC, [
                RealTimeWarehousingData(event_id=f"drain-{run}-{i}", user_id=f"u{i % 97}",
                                        event_name="bench", report_data='{"page": 1}',
                                        create_time_ms=now_ms)
                for i in range(start, min(start + 1000, n))
            ])
    finally:
        await publisher.close(timeout=10)
    on_stream = await stream_messages(nats_url, REPORT_TOPIC)
    if on_stream != n:
        raise RuntimeError(f"the stream holds {on_stream} events, not the {n} just published")
    work = Path(tempfile.mkdtemp(prefix="bench-drain-"))
    env = {**os.environ, "BROKER_TYPE": "jetstream", "BROKER_ADDRESS": nats_url,
           "DATABASE_URL": db_url, "LOG_LEVEL": "INFO"}
    log_path = work / "saver.log"
    with open(log_path, "wb") as log:  # noqa: ASYNC230 - before timing
        saver = subprocess.Popen(  # noqa: ASYNC220 - started before timing
            [sys.executable, "-m", "report_pipeline", "serve", "saver",
             *(["--workers", str(workers)] if workers > 1 else [])],
            env=env, cwd=project, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while log_path.read_bytes().count(b"saver started") < workers:
            if saver.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the saver did not start; see {log_path}")
            await asyncio.sleep(0.01)
        # from here on every worker runs; the first ones may have stored rows already, so
        # the rate and the CPU are of the rows stored from now on
        t0, cpu0 = time.perf_counter(), tree_cpu(saver.pid)
        stored = before = await count_rows(db_url)
        deadline = time.monotonic() + 120
        while stored < n and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            stored = await count_rows(db_url)
        elapsed, cpu = time.perf_counter() - t0, tree_cpu(saver.pid) - cpu0
        await asyncio.sleep(SETTLE)
        stored = await count_rows(db_url)
    finally:
        saver.send_signal(signal.SIGTERM)
        try:
            saver.wait(30)
        except subprocess.TimeoutExpired:
            saver.kill()
    timed = stored - before
    note = f"{before} stored before the last worker started" if before else ""
    side = f"saver drain, {workers} worker{'s' if workers > 1 else ''}"
    case = f"saver vs insert ({label})"
    if stored == n and timed < n * MIN_TIMED:  # a rate of the last few rows says nothing
        print(f"{case}, {side}: only {timed} rows of {n} were timed", flush=True)
        return Result(case, side, None, note=f"no rate: only {timed} of {n} rows stored after "
                      f"the last worker started; raise --saver-messages"
                      + (f"; {note}" if note else ""))
    result = Result(case, side, throughput(timed, elapsed), note=note,
                    cpu_us=cpu / timed * 1e6 if timed > 0 else None)
    return checked(result, stored, n, "published")
