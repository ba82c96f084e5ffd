"""Shared pieces of the benchmark: payloads, timing, percentiles, a paced sender."""

from __future__ import annotations

import asyncio
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
    side: str  # raw nats-py | framework | faststream
    msgs_per_s: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    note: str = ""


def throughput(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


async def framework_produce_consume(
    broker: Any, topic: str, n: int, options: Any, produce_case: str, consume_case: str
) -> list[Result]:
    """The framework side of a produce / consume pair: publish_batch in chunks, then a group
    subscription timed from when subscribe() returns, like the raw consumers."""
    reports = make_reports(n)
    t0 = time.perf_counter()
    for i in range(0, n, CHUNK):
        await broker.publish_batch(topic, reports[i:i + CHUNK])
    produced = Result(produce_case, "framework", throughput(n, time.perf_counter() - t0))
    sink = Sink(n)

    async def handler(msg: Report, ctx: Any) -> None:
        sink.hit(msg)

    sub = await broker.subscribe(topic, handler, group="fw", options=options)
    t0 = time.perf_counter()  # it handles nothing before this coroutine next awaits
    await sink.wait(TIMEOUT)
    consumed = Result(consume_case, "framework", throughput(n, time.perf_counter() - t0))
    await sub.close(5)
    return [produced, consumed]


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
