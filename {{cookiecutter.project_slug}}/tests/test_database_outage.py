"""A database outage loses nothing and dead-letters nothing.

The saver writes to a PostgreSQL server of the test's own (`tests/postgres_server.py`).
Reports are posted over gRPC; mid-stream the server is stopped with `pg_ctl stop -m
immediate` (every connection drops, as in a crash) for `OUTAGE` seconds, then started again
on the same port and data. The brokers: JetStream, pulsar-lite and Apache Pulsar (the session's
standalone, a namespace per test). An unreachable database is not a message failure, so:

- every report answered OK is stored, once (rows counted per report content:
  `tests/accounting.py`, whose check `tests/test_accounting.py` shows able to fail);
- nothing reaches the saver's dead-letter topics;
- `/readyz` answers 503 during the outage, the database down and the subscriptions paused
  (with the reason), and 200 after;
- the saver keeps running, logs the outage a few times (per state change, not per
  message) and never logs a report's content.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest
from brokerline.core import DLQ_REASON, known_types
from brokerline.core.embedded import free_port
from brokerline.testing.brokers import APACHE_PULSAR
from brokerline.testing.postgres import PostgresServer

from .accounting import audit_reports, dead_letters, rows_per_content, wait_for_contents
from .processes import Pair, post_reports, running_pair
from .service_process import Service

#: `pulsar` is pulsar-lite (test id `pulsar-lite`), `apache-pulsar` the session's standalone,
#: `kafka` the session's Apache Kafka (topics of the test's own)
DURABLE = [t for t in ("jetstream", "pulsar") if t in known_types()] + (
    [APACHE_PULSAR] if "pulsar" in known_types() else []
) + (["kafka"] if "kafka" in known_types() else [])
ENV_PREFIX = "{{ cookiecutter.package_name.upper() }}__"
REPORTS = 10_000
OUTAGE = 12.0  # seconds the database is down: longer than the saver's whole backoff budget
HEALTH_INTERVAL = 0.5  # seconds between the saver's readiness checks
NOT_READY_WITHIN = 3.0  # seconds after the stop by which /readyz must say NOT ready
MAX_WARNINGS = 50  # a few per state change is fine; one per message is the bug

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not DURABLE, reason="needs a durable broker plugin (jetstream, pulsar, kafka)"
    ),
    pytest.mark.skipif(
        find_spec("asyncpg") is None,
        reason="the project was generated with database=sqlite, so it has no PostgreSQL driver "
        "(asyncpg); generate it with database=postgresql to run the outage test",
    ),
]


@pytest.fixture(params=DURABLE)
def pair(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_server: PostgresServer
) -> Iterator[Pair]:
    db_url = postgres_server.create_database("saver")
    with running_pair(str(request.param), request, tmp_path, db_url=db_url) as pair:
        yield pair


@dataclass(frozen=True)
class Probe:
    at: float  # seconds since the database was stopped
    status: int  # HTTP status of /readyz; 0: no answer
    checks: dict[str, str]  # check -> "up" / "down"
    reasons: dict[str, str]  # check -> why it is down

    def not_ready_for_the_outage(self) -> bool:
        """503, the database down and the saver's subscriptions paused, with the reason."""
        return (self.status == 503 and self.checks.get("database") == "down"
                and self.checks.get("subscriptions") == "down"
                and "paused" in self.reasons.get("subscriptions", ""))


async def readiness(port: int) -> tuple[int, dict[str, Any]]:
    """GET /readyz from the saver's ops server: (status, its JSON); 0 if no answer."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 2)
        # read to the end: ask the server to close (HTTP/1.1 keeps the connection open)
        writer.write(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        raw = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        head, _, body = raw.partition(b"\r\n\r\n")
        return int(head.split()[1]), dict(json.loads(body))
    except (OSError, TimeoutError, ValueError, IndexError):  # no (complete) answer
        return 0, {}


async def wait_ready(port: int, timeout: float) -> float:
    """Seconds until /readyz answers 200 (fails the test after `timeout`)."""
    start = time.monotonic()
    while (await readiness(port))[0] != 200:
        assert time.monotonic() - start < timeout, f"the saver was not ready within {timeout}s"
        await asyncio.sleep(0.1)
    return time.monotonic() - start


async def probe_during(port: int, seconds: float) -> list[Probe]:
    start = time.monotonic()
    probes = []
    while (at := time.monotonic() - start) < seconds:
        status, state = await readiness(port)
        probes.append(Probe(at, status, state.get("checks", {}), state.get("reasons", {})))
        await asyncio.sleep(0.25)
    return probes


def saver_log_records(saver: Service) -> list[dict[str, Any]]:
    """The saver's JSON log records (a line that is not JSON counts as an ERROR)."""
    records = []
    for line in saver.log().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            records.append({"level": "ERROR", "message": line})
    return records


async def test_database_outage_loses_nothing_and_dead_letters_nothing(
    pair: Pair, postgres_server: PostgresServer
) -> None:
    ops_port = free_port()
    saver = pair.start(
        "saver", LOG_FORMAT="json", OTEL_EXPORTER_PROMETHEUS_PORT=str(ops_port),
        **{f"{ENV_PREFIX}TELEMETRY__HEALTH_INTERVAL": str(HEALTH_INTERVAL)},
    )
    report = pair.start("report")
    topics = (pair.report_topic, pair.status_topic)
    async with dead_letters(pair, topics, group=pair.group) as dead:
        await wait_ready(ops_port, timeout=60)
        # throttled so that reports keep coming before, during and after the outage
        posting = asyncio.create_task(
            post_reports(pair.grpc_address, REPORTS, concurrency=16, pause=0.02)
        )
        while sum((await rows_per_content(pair.db_url)).values()) < 500:
            assert not posting.done(), "every report was posted before the outage began"
            await asyncio.sleep(0.2)
        await asyncio.to_thread(postgres_server.stop_immediate)
        probes = await probe_during(ops_port, OUTAGE)
        await asyncio.to_thread(postgres_server.start)
        posting_after_outage = not posting.done()
        ready_again_after = await wait_ready(ops_port, timeout=60)
        result = await posting
        stored = await wait_for_contents(pair.db_url, result.contents.values(), timeout=60)
        await asyncio.sleep(2)  # a dead letter published last is seen by now
    audit = await audit_reports(pair.db_url, result.contents)
    warnings = Counter(f"{r.get('logger')}: {' '.join(str(r.get('message')).split()[:3])}"
                       for r in saver_log_records(saver)
                       if r.get("level") in ("WARNING", "ERROR", "CRITICAL"))
    warned = sum(warnings.values())
    reasons = Counter(ctx.headers.get(DLQ_REASON, "?")[:50] for ctx in dead)
    late = [p for p in probes if p.at >= NOT_READY_WITHIN]
    ready_late = [(round(p.at, 1), p.status, p.checks, p.reasons) for p in late
                  if not p.not_ready_for_the_outage()]
    print(f"{pair.broker_type}: {len(result.accepted)} accepted, {stored} stored, "
          f"{len(dead)} dead-lettered; {warned} saver warnings; "
          f"/readyz in the outage {Counter((p.status, str(p.checks)) for p in probes)}; "
          f"ready {ready_again_after:.1f}s after the restart; still posting then: "
          f"{posting_after_outage}")

    failures = audit.problems() + [message for failed, message in [
        (bool(result.refused), f"reports refused: {dict(result.refused)}"),
        (bool(dead), f"{len(dead)} messages dead-lettered: {dict(reasons)}"),
        (bool(ready_late) or not late, "/readyz was not 503 with the database down and the "
         f"subscriptions paused during the outage: {ready_late[:3]}"),
        (not saver.alive() or saver.starts != 1, "the saver died during the outage"),
        (not report.alive(), "the report service died"),
        (warned >= MAX_WARNINGS, f"{warned} saver warnings: {dict(warnings.most_common(4))}"),
        *((result.tag in s.log(), f"a report's content is in the {s.role} log")
          for s in (saver, report)),
    ] if failed]
    assert not failures, f"{pair.broker_type}: " + "; ".join(failures)
