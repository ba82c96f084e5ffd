"""Poison events from a foreign producer: every valid event is stored once, every bad one is
dead-lettered with its reason, and an event without an id hides nothing.

A raw client (nats-py's JetStream, pulsar-client: no framework, no headers, as a producer in
another language publishes) puts a mix on the report topic of a running `serve saver`: valid
events, text with a NUL character, an empty payload, a `PostReportRequest` and a
`UserReportData` (protobuf reads either as a report), truncated bytes, events without an id
and without a creation time. Unchecked, these were junk rows dated 1970 with `event_id=''`,
after which every event without an id was acked as "already stored". A `serve report` beside
it refuses NUL text and undecodable request bytes with INVALID_ARGUMENT, without a traceback.
The brokers: JetStream, pulsar-lite and Apache Pulsar (the session's standalone, a namespace
per test).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
from brokerline.config import DatabaseConfig
from brokerline.core import DLQ_REASON, MessageContext, known_types
from brokerline.sql.database import create_engine
from brokerline.testing.brokers import APACHE_PULSAR, eventually, unique
from sqlalchemy import select

from {{ cookiecutter.package_name }}.api.events.v1.events_pb2 import (
    RealTimeWarehousingData,
    UserReportData,
)
from {{ cookiecutter.package_name }}.api.report.v1 import report_pb2, report_pb2_grpc
from {{ cookiecutter.package_name }}.data.models import AcceptStatus

from .databases import DATABASES, scratch_postgres_database
from .processes import Pair, post_reports, running_pair, stored_event_ids, wait_for_rows
from .service_process import Service

#: `pulsar` is pulsar-lite (test id `pulsar-lite`), `apache-pulsar` the session's standalone,
#: `kafka` the session's Apache Kafka (topics of the test's own)
DURABLE = [t for t in ("jetstream", "pulsar") if t in known_types()] + (
    [APACHE_PULSAR] if "pulsar" in known_types() else []
) + (["kafka"] if "kafka" in known_types() else [])
ROUNDS = 40
NOW_MS = int(time.time() * 1000)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not DURABLE, reason="needs a durable broker plugin (jetstream, pulsar, kafka)"
    ),
]

Send = Callable[[bytes], Awaitable[None]]


@pytest.fixture(params=DURABLE)
def durable_broker(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=DATABASES)
def database(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def pair(
    request: pytest.FixtureRequest, tmp_path: Path, durable_broker: str, database: str
) -> AsyncIterator[Pair]:
    async with AsyncExitStack() as stack:
        db_url = ""
        if database == "postgresql":
            db_url = await stack.enter_async_context(scratch_postgres_database())
        yield stack.enter_context(running_pair(durable_broker, request, tmp_path, db_url=db_url))


@asynccontextmanager
async def foreign_producer(pair: Pair, topic: str) -> AsyncIterator[Send]:
    """Publishes bytes to `topic` with the broker's own client, no headers at all."""
    if pair.broker_type == "jetstream":
        import nats

        client = await nats.connect(pair.broker.url)
        js = client.jetstream()

        async def send(payload: bytes) -> None:
            await js.publish(topic, payload)

        try:
            yield send
        finally:
            await client.close()
        return
    if pair.broker_type == "kafka":
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=pair.broker.url)
        await producer.start()

        async def send_to_kafka(payload: bytes) -> None:
            await producer.send_and_wait(topic, payload)

        try:
            yield send_to_kafka
        finally:
            await producer.stop()
        return
    import pulsar

    pulsar_client = pulsar.Client(pair.broker.url, operation_timeout_seconds=10)
    producer = pulsar_client.create_producer(
        f"persistent://public/{pair.pulsar_namespace}/{topic}", batching_enabled=False
    )

    async def send_to_pulsar(payload: bytes) -> None:
        await asyncio.to_thread(producer.send, payload)

    try:
        yield send_to_pulsar
    finally:
        producer.close()
        pulsar_client.close()


def event(n: int, **fields: Any) -> RealTimeWarehousingData:
    values: dict[str, Any] = {
        "event_id": f"good-{n}", "user_id": f"user-{n % 7}", "event_name": "click",
        "report_data": f"report {n}", "create_time_ms": NOW_MS + n,
    }
    values.update(fields)
    return RealTimeWarehousingData(**values)


def poison_mix(n: int) -> list[tuple[str, bytes]]:
    """One round: (category, payload); the payloads of a round differ from other rounds'."""
    valid = event(n).SerializeToString()
    return [
        ("valid", valid),
        ("id-less", event(n, event_id="").SerializeToString()),
        ("valid", event(n + 100_000).SerializeToString()),  # right after an id-less one
        ("nul", event(n, event_id=f"nul-{n}", report_data="a\x00b").SerializeToString()),
        ("no-create-time", event(n, event_id=f"notime-{n}", create_time_ms=0).SerializeToString()),
        ("post-report-request", report_pb2.PostReportRequest(
            user_id=f"pr-{n}", event_name="click", content="hello").SerializeToString()),
        ("user-report-data", UserReportData(
            event_id=f"status-{n}", user_id="u", status="accepted", create_time_ms=NOW_MS + n
        ).SerializeToString()),
        ("truncated", valid[:-3]),  # cut inside the creation time's varint
        ("empty", b""),
    ]


def status_poison_mix(n: int) -> list[tuple[str, bytes]]:
    """One round for the status topic: a valid status among ones the saver cannot store."""
    def status(**fields: Any) -> bytes:
        values: dict[str, Any] = {"event_id": f"status-{n}", "user_id": "u",
                                  "status": "accepted", "create_time_ms": NOW_MS + n}
        values.update(fields)
        return UserReportData(**values).SerializeToString()

    return [
        ("valid", status()),
        ("status-id-less", status(event_id="")),
        ("status-too-long", status(event_id=f"long-{n}", status="s" * 33)),
        ("report-as-status", event(n).SerializeToString()),
        ("empty", b""),
    ]


#: what each bad category's dead-letter reason says (the saver's rules, or the decoder)
REASONS = {
    "id-less": "rejected: event_id is required",
    "nul": "rejected: report_data contains a NUL character",
    "no-create-time": "rejected: create_time_ms is missing",
    "post-report-request": "rejected: create_time_ms is missing",
    "user-report-data": "rejected: create_time_ms is missing",
    "truncated": "decode error: payload is not a valid events.v1.RealTimeWarehousingData",
    "empty": "rejected: event_id is required",
    "framework-wrong-type": "decode error: payload is a events.v1.UserReportData, not a",
    "status-id-less": "rejected: event_id is required",
    "status-too-long": "rejected: status is longer than 32 characters (33)",
    "report-as-status": "rejected: create_time_ms is missing",  # its field 5 is unknown here
}

#: by the topic's role: each pair names its own topics (`Pair.report_topic`, `.status_topic`)
MIXES = {"report": poison_mix, "status": status_poison_mix}
MODELS: dict[str, Any] = {"report": RealTimeWarehousingData, "status": UserReportData}


async def started(service: Service, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while " started" not in service.log():
        assert service.alive(), f"{service.role} exited:\n{service.log()[-3000:]}"
        assert time.monotonic() < deadline, f"{service.role} did not start within {timeout}s"
        await asyncio.sleep(0.05)


async def test_poison_mix_valid_stored_once_bad_dead_lettered_with_reason(pair: Pair) -> None:
    # topic's role -> payload -> the reason of each dead letter of that payload
    dead: dict[str, dict[bytes, list[str]]] = {t: defaultdict(list) for t in MIXES}

    def collector(role: str) -> Callable[[bytes, MessageContext], Awaitable[None]]:
        async def on_dead_letter(msg: bytes, ctx: MessageContext) -> None:
            dead[role][msg].append(ctx.headers.get(DLQ_REASON, ""))

        return on_dead_letter

    # connected first: on JetStream it makes the stream, with the test topics the saver allows
    client = pair.client()
    await client.connect()
    sent: dict[str, list[tuple[str, bytes]]] = {t: [] for t in MIXES}
    try:
        saver = pair.start("saver")
        await started(saver)
        topics = {"report": pair.report_topic, "status": pair.status_topic}
        for role in MIXES:
            await client.subscribe(f"{topics[role]}-{pair.group}-DLQ", collector(role),
                                   group=unique("dlq"))
        for role, mix in MIXES.items():
            async with foreign_producer(pair, topics[role]) as send:
                for n in range(ROUNDS):
                    for category, payload in mix(n):
                        await send(payload)
                        sent[role].append((category, payload))
        # and one from this framework: its content type names the message type it carries
        wrong = UserReportData(event_id="framework-wrong", user_id="u", status="accepted",
                               create_time_ms=NOW_MS)
        await client.publish(topics["report"], wrong, key="u")
        sent["report"].append(("framework-wrong-type", wrong.SerializeToString()))

        bad = {t: Counter(p for c, p in sent[t] if c != "valid") for t in MIXES}
        expected_dead = sum(c.total() for c in bad.values())

        def dead_total() -> int:
            return sum(len(r) for by_payload in dead.values() for r in by_payload.values())

        await eventually(lambda: dead_total() >= expected_dead, timeout=90, interval=0.2)
        good = {t: sorted(MODELS[t].FromString(p).event_id for c, p in sent[t] if c == "valid")
                for t in MIXES}
        await wait_for_rows(pair.db_url, len(good["report"]), timeout=60)
        await asyncio.sleep(1)  # time for anything extra to arrive: a late junk row, a duplicate
        stored = {"report": sorted(await stored_event_ids(pair.db_url)),
                  "status": sorted(await stored_status_ids(pair.db_url))}
        dead_letters = dead_total()
    finally:
        await client.close(timeout=5)

    # no valid event missing or stored twice, and no junk row (no id, dated 1970) beside them
    assert stored == good
    assert dead_letters == expected_dead, f"{dead_letters} dead letters for {expected_dead}"
    for role in MIXES:
        assert {p: len(r) for p, r in dead[role].items()} == dict(bad[role]), role
        for category, payload in sent[role]:
            if category != "valid":
                reason = dead[role][payload][0]
                assert reason.startswith(REASONS[category]), f"{category}: {reason!r}"
    log = saver.log()
    assert "already stored" not in log  # an id-less event was never taken for a stored one
    assert "Traceback" not in log
    assert saver.alive()


async def stored_status_ids(db_url: str) -> list[str]:
    engine = create_engine(DatabaseConfig(url=db_url))
    try:
        async with engine.connect() as conn:
            return list((await conn.scalars(select(AcceptStatus.event_id))).all())
    finally:
        await engine.dispose()


async def test_report_refuses_what_the_saver_could_not_store(pair: Pair) -> None:
    """NUL text, bytes that are not UTF-8 and garbage: INVALID_ARGUMENT, no traceback, a
    burst told in one line; the valid reports around them are stored."""
    saver = pair.start("saver")
    report = pair.start("report")
    await started(saver)
    codes: Counter[str] = Counter()
    async with grpc.aio.insecure_channel(pair.grpc_address) as channel:
        stub = report_pb2_grpc.ReportServiceStub(channel)
        post_raw = channel.unary_unary("/report.v1.ReportService/PostReport")
        nul = report_pb2.PostReportRequest(user_id="u", event_name="e", content="a\x00b")
        undecodable = [b"\x0a\x02\xff\xfe", b"\x1a\x03\xc3\x28x", b"\xff" * 12] * 20
        for payload in undecodable:
            try:
                await post_raw(payload, timeout=10)
                codes["OK"] += 1
            except grpc.aio.AioRpcError as exc:
                codes[exc.code().name] += 1
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.PostReport(nul, timeout=10)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "content contains a NUL character" in (raised.value.details() or "")
    assert codes == {"INVALID_ARGUMENT": len(undecodable)}
    result = await post_reports(pair.grpc_address, 50, concurrency=4)
    assert not result.refused and len(result.accepted) == 50
    stored = await wait_for_rows(pair.db_url, 50, timeout=60)
    assert sorted(stored) == sorted(result.accepted)
    log = report.log()
    assert "Traceback" not in log
    assert log.count("undecodable request") <= 2, log  # the first, then one count at most
    assert saver.alive() and report.alive()
