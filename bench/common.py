"""Shared pieces of the benchmark: payloads, timing, percentiles, a paced sender."""

from __future__ import annotations

import asyncio
import gc
import resource
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

CHUNK = 500  # publishes between flushes (raw NATS) / per publish_batch call (framework)
TIMEOUT = 60.0  # seconds a side may take to receive everything


class Report(BaseModel):
    """The typed message both sides decode: about 100 bytes of JSON."""

    event_id: str
    user_id: str
    event_name: str
    content: str
    ts: int  # perf_counter_ns() when it was sent (latency runs), 0 otherwise


def make_reports(n: int) -> list[Report]:
    return [
        Report(event_id=f"ev-{i:010d}", user_id=f"user-{i % 97}", event_name="page_view",
               content="x" * 16, ts=0)
        for i in range(n)
    ]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Sink:
    """Counts received messages; records latency when the message carries a send time."""

    expected: int
    received: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def hit(self, report: Report) -> None:
        if report.ts:
            self.latencies_ms.append((time.perf_counter_ns() - report.ts) / 1e6)
        self.received += 1
        if self.received >= self.expected:
            self.done.set()

    async def wait(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self.done.wait(), timeout)
        except TimeoutError:
            got = f"received {self.received} of {self.expected} in {timeout}s"
            raise RuntimeError(got) from None


async def paced(rate: float, n: int, send: Callable[[Report], Awaitable[object]]) -> None:
    """Send `n` reports at `rate` per second, each stamped with its send time."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    template = make_reports(1)[0]
    for i in range(n):
        due = start + i / rate
        now = loop.time()
        if due > now:
            await asyncio.sleep(due - now)
        report = template.model_copy(update={"event_id": f"lat-{i}", "ts": time.perf_counter_ns()})
        await send(report)


@dataclass
class Result:
    case: str  # e.g. "NATS core end to end"
    side: str  # raw nats-py | framework | framework (batch) | faststream | faststream (batch)
    msgs_per_s: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    note: str = ""
    #: CPU time of the side's process(es) per message, in microseconds, over the timed part:
    #: user + system of every thread (the client libraries' I/O threads too), not of the
    #: broker or database server; independent of how busy the machine was
    cpu_us: float | None = None
    #: end-to-end rows: the rate the load was offered at (the saver's posting client), which
    #: bounds the row's own rate
    offered_per_s: float | None = None


def throughput(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def process_cpu() -> float:
    """CPU seconds this process has used so far (all threads, user + system)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Timed:
    """Wall and CPU time of a block: `with Timed() as t: ...`, then `t.rate(n)`, `t.cpu_us(n)`."""

    def __enter__(self) -> Timed:
        self.cpu0, self.t0 = process_cpu(), time.perf_counter()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.seconds = time.perf_counter() - self.t0
        self.cpu = process_cpu() - self.cpu0

    def rate(self, n: int) -> float:
        return throughput(n, self.seconds)

    def cpu_us(self, n: int) -> float:
        return self.cpu / n * 1e6 if n else float("nan")


async def framework_produce_consume(
    broker: Any, topic: str, n: int, options: Any, produce_case: str, consume_case: str,
    in_flight: int = 1,
) -> list[Result]:
    """The framework side of a produce / consume pair: publish_batch in chunks (`in_flight`
    chunks at a time, to match a raw side that keeps that many messages pending), then a group
    subscription timed from when subscribe() returns, like the raw consumers."""
    produced = await framework_produce(broker, topic, n, produce_case, in_flight)
    return [produced, await framework_consume(broker, topic, n, options, consume_case)]


async def framework_produce(
    broker: Any, topic: str, n: int, case: str, in_flight: int = 1
) -> Result:
    """publish_batch in chunks, `in_flight` chunks at a time."""
    reports = make_reports(n)
    with Timed() as t:
        pending: set[asyncio.Task[None]] = set()
        for i in range(0, n, CHUNK):
            if len(pending) >= in_flight:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()
            pending.add(asyncio.ensure_future(broker.publish_batch(topic, reports[i:i + CHUNK])))
        for task in pending:
            await task
    return Result(case, "framework", t.rate(n), cpu_us=t.cpu_us(n))


async def framework_consume(
    broker: Any, topic: str, n: int, options: Any, case: str, batch: Any = None
) -> Result:
    """Consume `n` messages already on `topic` with a single handler, or with a batch handler
    when `batch` (BatchOptions) is given; timed from when subscribe returns."""
    sink = Sink(n)

    async def handler(msg: Report, ctx: Any) -> None:
        sink.hit(msg)

    async def batch_handler(msgs: list[Report], ctx: Any) -> None:
        for msg in msgs:
            sink.hit(msg)

    if batch is None:
        sub = await broker.subscribe(topic, handler, group="fw", options=options)
    else:
        sub = await broker.subscribe_batch(topic, batch_handler, group="fw-batch",
                                           options=options, batch=batch)
    with Timed() as t:  # it handles nothing before this coroutine next awaits
        await sink.wait(TIMEOUT)
    await sub.close(5)
    side = "framework" if batch is None else "framework (batch)"
    note = "" if batch is None else f"batches of up to {batch.max_size}"
    return Result(case, side, t.rate(n), note=note, cpu_us=t.cpu_us(n))


async def asgi_body(receive: Callable[[], Awaitable[dict[str, Any]]]) -> bytes:
    """An ASGI request's whole body (the bare HTTP servers' only request handling)."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def asgi_json(send: Callable[[dict[str, Any]], Awaitable[None]], out: bytes) -> None:
    """Answer 200 with a JSON body."""
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(out)).encode())]})
    await send({"type": "http.response.body", "body": out})


def skipped(notes: list[str], reason: str) -> None:
    """Say that a group or case did not run, and why: printed now, and in the results' notes."""
    notes.append(reason)
    print(reason, flush=True)


def freeze_start_up_heap() -> None:
    """What `serve` does before its App consumes (brokerline.cli.serve.freeze_start_up_heap):
    the start-up heap leaves the collector's work. Done once per benchmark process, before any
    side runs, so every side (raw, framework, FastStream) runs with it."""
    gc.collect()
    gc.freeze()
