"""A JetStream cluster losing a node: the stream leader is killed mid-stream and comes back.

Three nats-server processes clustered on loopback, the EVENTS stream with three replicas,
`serve report` and `serve saver` connected with all three URLs. While 20,000 reports are
posted over gRPC, the node leading the stream is killed with SIGKILL and restarted on the
same ports and store five seconds later. Before the kill, leader step-downs make the node
that serves the report service's connection (one case) or the saver's (the other) the
leader of the stream and of the saver's consumers too, so one death cuts a service off,
leaves the stream and the consumers without a leader and ends the pull requests that waited
on it. Then: every report answered OK is one row, no
report is two rows, nothing was dead-lettered, and both services are still the processes
the test started (they recovered by themselves).

Duplicates are counted where they can happen, not only where the database's unique index
hides them:

- rows per report *content* (each request's content is unique): a report resent by the
  client, or a redelivery stored by a saver that is not idempotent, is a second row. This
  check fails when idempotency is off: with the saver's unique index and ON CONFLICT removed,
  one run of this test stored 20,086 rows for 20,000 reports ("86 reports stored more than
  once (by content)"), the redeliveries of the failover;
- messages per subject on the stream against distinct stored reports: a publish resent
  without its `Nats-Msg-Id` would be a second stream message with the same event id, which
  the saver folds into one row. It can only fail when a resent message had in fact been
  stored (its acknowledgement lost), which not every failover produces.

The posting client does not retry: a report refused during the election (UNAVAILABLE) was
never acknowledged, so it cannot be "lost"; it may still have been stored (its
acknowledgement was what got lost), so rows may exceed the accepted reports by at most the
refused ones. The test prints how many were refused and keeps that number small.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import nats
import pytest
from brokerline.config import DatabaseConfig
from brokerline.core import known_types
from brokerline.jetstream.consumer import durable_name
from brokerline.sql.database import create_engine
from brokerline.testing.nats_cluster import NatsCluster
from sqlalchemy import func, select

from {{ cookiecutter.package_name }}.data.models import RealtimeWarehousing

from .processes import Pair, PostResult, post_reports, stored_event_ids

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif("jetstream" not in known_types(), reason="needs the jetstream plugin"),
]

REPORTS = 20_000
STREAM = "EVENTS"
REPORT_TOPIC = "events.realtime-warehousing"
SAVER_CONSUMERS = [
    durable_name("saver", topic) for topic in (REPORT_TOPIC, "events.user-report")
]
ENV_PREFIX = "{{ cookiecutter.package_name.upper() }}__"
#: the node is down this long before it is restarted
DOWNTIME = 5.0
#: refused reports tolerated (UNAVAILABLE while the stream elects a new leader)
MAX_REFUSED = REPORTS // 100


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    cluster = NatsCluster.create(tmp_path / "cluster").start()
    yield cluster
    cluster.cleanup()


@pytest.mark.parametrize("serving", ["report", "saver"])
async def test_stream_leader_killed_mid_stream_loses_nothing_stores_nothing_twice(
    cluster: NatsCluster, tmp_path: Path, serving: str
) -> None:
    started = time.monotonic()
    pair = Pair("jetstream", cluster.nodes[0].server, tmp_path)
    env = {
        "BROKER_ADDRESS": cluster.urls,
        "NATS_STREAM_REPLICAS": "3",
        # messages a dead leader had delivered and never saw acked come back within seconds
        f"{ENV_PREFIX}BROKER__SUBSCRIBER__ACK_WAIT": "5",
    }
    try:
        saver = pair.start("saver", **env, **{f"{ENV_PREFIX}BROKER__NATS__NAME": "saver"})
        report = pair.start("report", **env, **{f"{ENV_PREFIX}BROKER__NATS__NAME": "report"})
        posting = asyncio.create_task(post_reports(pair.grpc_address, REPORTS, concurrency=32))
        await _wait_until(lambda: _rows(pair.db_url), at_least=REPORTS // 5, posting=posting)
        # The victim serves one service's connection and leads the stream and the saver's
        # consumers: its death cuts that service off, leaves the stream and the consumers
        # without a leader, and ends the pull requests that were waiting on it.
        # (the cluster helpers block: they run in threads, so the posting goes on meanwhile)
        victim = await asyncio.to_thread(cluster.node_serving, serving)
        await cluster.move_leaders(victim, STREAM, SAVER_CONSUMERS)
        served = [name for name in ("report", "saver")
                  if await asyncio.to_thread(cluster.node_serving, name) is victim]
        victim.server.kill()
        killed_at = time.monotonic() - started
        await asyncio.sleep(DOWNTIME)
        await asyncio.to_thread(victim.server.start)
        result = await posting
        posted_at = time.monotonic() - started
        await asyncio.to_thread(cluster.wait_until_healthy)
        on_stream = (await _stream_subjects(cluster.urls)).get(REPORT_TOPIC, 0)
        rows = await _wait_for_all(pair.db_url, set(result.accepted), on_stream, timeout=120)
        subjects = await _stream_subjects(cluster.urls)
        per_content = await _rows_per_content(pair.db_url)
        survived = saver.alive() and report.alive()
    finally:
        pair.stop_all()
    refused = sum(result.refused.values())
    print(
        f"\nkilled {victim.name} (leader of the stream and consumers, serving "
        f"{' and '.join(served)}) at {killed_at:.1f}s, posting done at {posted_at:.1f}s, "
        f"all rows at {time.monotonic() - started:.1f}s: {len(result.accepted)} accepted, "
        f"refused {dict(result.refused) or 0}, {len(rows)} rows, stream subjects {subjects}"
    )
    assert survived, "a service died instead of recovering"
    assert saver.starts == 1 and report.starts == 1
    lost = set(result.accepted) - set(rows)
    assert not lost, f"{len(lost)} reports answered OK were never stored"
    twice = {content: n for content, n in per_content.items() if n > 1}
    assert not twice, f"{len(twice)} reports stored more than once (by content)"
    assert len(rows) == len(set(rows)) == len(per_content)
    assert set(result.refused) <= {"UNAVAILABLE"}, dict(result.refused)
    assert refused <= MAX_REFUSED, f"{refused} reports refused during the failover"
    assert len(rows) - len(result.accepted) <= refused
    assert subjects.get(REPORT_TOPIC) == len(set(rows)), "the stream holds a report twice"
    dead = {s: n for s, n in subjects.items() if s.endswith("-DLQ")}
    assert not dead, f"dead-lettered: {dead}"


async def _wait_until(
    count: Callable[[], Awaitable[int]], *, at_least: int, posting: asyncio.Task[PostResult],
    timeout: float = 60,
) -> None:
    """Wait until `count()` reaches `at_least` while the reports are still being posted."""
    deadline = time.monotonic() + timeout
    while await count() < at_least:
        assert not posting.done(), "posting ended before the failover: post more reports"
        assert time.monotonic() < deadline, f"fewer than {at_least} rows after {timeout}s"
        await asyncio.sleep(0.1)
    assert not posting.done(), "posting ended before the failover: post more reports"


async def _wait_for_all(
    db_url: str, accepted: set[str], on_stream: int, timeout: float
) -> list[str]:
    """The stored event ids once every accepted report and every report on the stream
    (accepted or not) is there, or at the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        ids = await stored_event_ids(db_url)
        stored = set(ids)
        if (accepted <= stored and len(stored) >= on_stream) or time.monotonic() > deadline:
            return ids
        await asyncio.sleep(0.5)


async def _rows(db_url: str) -> int:
    engine = create_engine(DatabaseConfig(url=db_url))
    try:
        async with engine.connect() as conn:
            try:
                return int(await conn.scalar(select(func.count(RealtimeWarehousing.id))) or 0)
            except Exception:  # the saver has not created the table yet
                return 0
    finally:
        await engine.dispose()


async def _rows_per_content(db_url: str) -> dict[str, int]:
    engine = create_engine(DatabaseConfig(url=db_url))
    try:
        async with engine.connect() as conn:
            query = select(RealtimeWarehousing.report_data, func.count()).group_by(
                RealtimeWarehousing.report_data
            )
            return {content: int(n) for content, n in (await conn.execute(query)).all()}
    finally:
        await engine.dispose()


async def _stream_subjects(urls: str) -> dict[str, int]:
    """Messages per subject on the stream, as its leader reports them."""
    client = await nats.connect(urls.split(","), connect_timeout=5)
    try:
        info = await client.jetstream().stream_info(STREAM, subjects_filter=">")
        return dict(info.state.subjects or {})
    finally:
        await client.close()
