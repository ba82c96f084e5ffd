"""`serve --workers 2`: two saver processes in one consumer group store every event once; two
report processes answer gRPC and HTTP on one port each (SO_REUSEPORT); a second saver that
joins and leaves the group mid-stream leaves every event stored once.

On JetStream (one durable consumer) and on Apache Pulsar (one Shared subscription, the
session's standalone in a namespace of this test's). Not on pulsar-lite: it refuses a second
consumer on a subscription.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from brokerline.core import known_types
from brokerline.core.embedded import free_port, wait_for_port
from brokerline.testing.apache_pulsar import ApachePulsarServer
from brokerline.testing.apache_pulsar.admin import admin
from brokerline.testing.brokers import APACHE_PULSAR

from .processes import (
    REPORT_TOPIC,
    Pair,
    PostResult,
    post_reports,
    running_pair,
    stored_event_ids,
    wait_for_rows,
)
from .service_process import Service

SHARED_GROUPS = (["jetstream"] if "jetstream" in known_types() else []) + (
    [APACHE_PULSAR] if "pulsar" in known_types() else []
) + (["kafka"] if "kafka" in known_types() else [])  # a consumer group over 3 partitions

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not SHARED_GROUPS, reason="needs the jetstream, pulsar or kafka plugin"),
]

COUNT = 400
#: the rebalance test posts at least this many reports, in rounds, until its phases are over
MID_STREAM_MINIMUM = 3000


@pytest.fixture(params=SHARED_GROUPS)
def pair(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Pair]:
    with running_pair(str(request.param), request, tmp_path) as pair:
        yield pair


def test_two_saver_workers_store_every_event_exactly_once(pair: Pair, tmp_path: Path) -> None:
    with saver_workers(pair, tmp_path) as (workers, log_path):
        pair.start("report")
        result = asyncio.run(post_reports(pair.grpc_address, COUNT, concurrency=16))
        assert len(result.accepted) == COUNT, result.refused
        stored = asyncio.run(wait_for_rows(pair.db_url, COUNT, timeout=60))
        duplicates = [i for i, n in Counter(stored).items() if n > 1]
        assert not duplicates
        assert sorted(stored) == sorted(result.accepted)
        if isinstance(pair.broker, ApachePulsarServer):
            assert_both_workers_got_a_share(pair.broker, pair.pulsar_namespace)
        workers.send_signal(signal.SIGTERM)
        assert workers.wait(60) == 0, log_path.read_text(errors="replace")[-3000:]
        text = log_path.read_text(errors="replace")
        assert text.count(":saver stopped") == 2, text[-3000:]
        assert "Traceback" not in text, text[-3000:]


def test_a_saver_joining_and_leaving_mid_stream_loses_and_duplicates_nothing(
    pair: Pair, tmp_path: Path
) -> None:
    """Reports flow the whole time; a second `serve saver` joins the group, stores a share (by
    its own /metrics), and leaves with SIGTERM. Each rebalance hands work over: every accepted
    report is exactly one row."""
    pair.start("saver")
    pair.start("report")
    metrics = free_port()
    (tmp_path / "second").mkdir()
    second = Service("saver", pair.env(OTEL_EXPORTER_PROMETHEUS_PORT=str(metrics)),
                     tmp_path / "second")
    try:
        posts, share = asyncio.run(join_and_leave_mid_stream(pair, second, metrics))
    finally:
        if second.alive():
            second.kill()
    accepted = [event_id for post in posts for event_id in post.accepted]
    assert not any(post.refused for post in posts), [post.refused for post in posts]
    assert len(accepted) >= MID_STREAM_MINIMUM
    stored = asyncio.run(wait_for_rows(pair.db_url, len(accepted), timeout=60))
    duplicates = [event_id for event_id, n in Counter(stored).items() if n > 1]
    assert not duplicates, f"{len(duplicates)} reports stored twice"
    lost = set(accepted) - set(stored)
    assert not lost, f"{len(lost)} of {len(accepted)} accepted reports never stored"
    assert len(stored) == len(accepted)
    assert share > 0, "the second saver stored nothing while it was in the group"
    log = second.log()
    assert ":saver stopped" in log and "Traceback" not in log, log[-3000:]


async def join_and_leave_mid_stream(
    pair: Pair, second: Service, metrics_port: int
) -> tuple[list[PostResult], int]:
    """Post in rounds throughout; meanwhile: the first saver alone, `second` joins and
    stores some, `second` leaves, the first saver alone again. Returns every round's result
    and the reports `second` acked (stored) before it left."""
    over = asyncio.Event()
    posting = asyncio.create_task(post_until(pair.grpc_address, over, MID_STREAM_MINIMUM))

    def rows_beyond(count: int) -> Callable[[], Awaitable[bool]]:
        async def enough() -> bool:
            return len(await stored_event_ids(pair.db_url)) > count
        return enough

    try:
        await until("rows from the first saver", rows_beyond(200), posting)
        second.start()

        async def second_stored_some() -> bool:
            return (await asyncio.to_thread(acked, metrics_port)) >= 200

        await until("a share for the second saver", second_stored_some, posting)
        share = await asyncio.to_thread(acked, metrics_port)
        assert await asyncio.to_thread(second.terminate, 30) == 0, second.log()[-3000:]
        left_at = len(await stored_event_ids(pair.db_url))
        await until("rows after the second saver left", rows_beyond(left_at + 200), posting)
    finally:
        over.set()
    return await posting, share


async def post_until(target: str, over: asyncio.Event, minimum: int) -> list[PostResult]:
    """Rounds of 100 reports (16 at a time, a short pause each) until `over` and `minimum`."""
    rounds: list[PostResult] = []
    while not over.is_set() or sum(len(r.accepted) for r in rounds) < minimum:
        rounds.append(await post_reports(target, 100, concurrency=16, pause=0.005))
    return rounds


async def until(
    what: str, check: Callable[[], Awaitable[bool]], posting: asyncio.Task[list[PostResult]],
    timeout: float = 30,
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if posting.done():
            posting.result()  # its error, if it failed
        assert loop.time() < deadline, f"no {what} within {timeout:.0f}s"
        await asyncio.sleep(0.2)


def acked(metrics_port: int) -> int:
    """Deliveries a saver acked (after storing them), from its /metrics; 0 before it serves."""
    try:
        conn = http.client.HTTPConnection("127.0.0.1", metrics_port, timeout=5)
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    except OSError:
        return 0
    return int(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("messaging_client_acked_messages_total")))


def test_a_worker_killed_stops_the_group_instead_of_running_one_short(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    # the supervisor, not the broker, is under test: one broker is enough (the first listed)
    with running_pair(SHARED_GROUPS[0], request, tmp_path) as pair, \
            saver_workers(pair, tmp_path) as (workers, log_path):
        pids = worker_pids(log_path)
        os.kill(pids[0], signal.SIGKILL)
        assert workers.wait(60) == 128 + signal.SIGKILL
        text = log_path.read_text(errors="replace")
        assert f"saver worker {pids[0]} was killed by signal 9: stopping the other workers" in text
        assert text.count(":saver stopped") == 1, text[-3000:]  # the other one, cleanly


def test_a_supervisor_killed_with_sigkill_takes_its_workers_down_cleanly(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    # SIGKILL cannot be forwarded: the workers learn it from the kernel (parent-death signal)
    with running_pair(SHARED_GROUPS[0], request, tmp_path) as pair, \
            saver_workers(pair, tmp_path) as (workers, log_path):
        pids = worker_pids(log_path)
        workers.kill()
        workers.wait()
        deadline = time.monotonic() + 60
        while any(_running(pid) for pid in pids):
            assert time.monotonic() < deadline, "workers outlived their SIGKILLed supervisor"
            time.sleep(0.1)
        text = log_path.read_text(errors="replace")
        assert text.count(":saver stopped") == 2, text[-3000:]  # both drained, not killed


def test_two_report_workers_answer_grpc_and_http_on_one_port_each(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Connections spread over both workers (each publishes a share, by its own /metrics on
    metrics_port + its index); every report accepted over either transport is stored once."""
    with running_pair(SHARED_GROUPS[0], request, tmp_path) as pair:
        pair.start("saver")
        metrics = two_free_ports()
        with workers_of("report", pair, tmp_path,
                        OTEL_EXPORTER_PROMETHEUS_PORT=str(metrics)) as (workers, log_path):
            wait_for_port(int(pair.http_address.rsplit(":", 1)[1]), 30, workers, "HTTP")
            grpc_posts = asyncio.run(posts_on_many_connections(pair.grpc_address))
            http_ids = post_http_on_many_connections(pair.http_address)
            accepted = [*(i for r in grpc_posts for i in r.accepted), *http_ids]
            assert len(accepted) == 8 * 40 + 8 * 20, [r.refused for r in grpc_posts]
            stored = asyncio.run(wait_for_rows(pair.db_url, len(accepted), timeout=60))
            assert sorted(stored) == sorted(accepted)  # each once
            sent = [published(metrics + index, pair.report_topic) for index in range(2)]
            assert all(sent) and sum(sent) == len(accepted), f"reports per worker: {sent}"
            workers.send_signal(signal.SIGTERM)
            assert workers.wait(60) == 0, log_path.read_text(errors="replace")[-3000:]
        text = log_path.read_text(errors="replace")
        assert text.count(":report stopped") == 2 and "Traceback" not in text, text[-3000:]


async def posts_on_many_connections(target: str) -> list[PostResult]:
    """8 clients, each its own channel (one TCP connection: the kernel picks a worker)."""
    return list(await asyncio.gather(
        *(post_reports(target, 40, concurrency=4) for _ in range(8))))


def post_http_on_many_connections(address: str) -> list[str]:
    def client(n: int) -> list[str]:
        conn = http.client.HTTPConnection(address, timeout=30)  # keep-alive: one connection
        ids = []
        for i in range(20):
            body = json.dumps({"user_id": f"u{n}", "event_name": "e", "content": f"c{n}-{i}"})
            conn.request("POST", "/v1/report", body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            answer = json.loads(response.read())
            assert response.status == 200, answer
            ids.append(answer["eventId"])
        conn.close()
        return ids

    async def clients() -> list[list[str]]:
        return list(await asyncio.gather(*(asyncio.to_thread(client, n) for n in range(8))))

    return [i for ids in asyncio.run(clients()) for i in ids]


def published(metrics_port: int, topic: str) -> int:
    """Reports a worker published to the saver's topic, from its own /metrics."""
    conn = http.client.HTTPConnection("127.0.0.1", metrics_port, timeout=10)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    return int(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("messaging_client_sent_messages_total")
                   and f'messaging_destination_name="{topic}"' in line))


def two_free_ports() -> int:
    """A port P with P + 1 free too (worker i serves its metrics on P + i)."""
    while True:
        port = free_port()
        with contextlib.suppress(OSError), socket.socket() as probe:
            probe.bind(("127.0.0.1", port + 1))
            return port


def worker_pids(log_path: Path, role: str = "saver") -> list[int]:
    """The workers' pids, as the supervisor logged them."""
    found = re.search(rf"started 2 {role} workers: (\d+), (\d+)", log_path.read_text())
    assert found, log_path.read_text(errors="replace")[-3000:]
    return [int(pid) for pid in found.groups()]


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's exit waits for whoever reaps it)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def saver_workers(pair: Pair, workdir: Path) -> contextlib.AbstractContextManager[
        tuple[subprocess.Popen[bytes], Path]]:
    """`serve saver --workers 2`, both workers subscribed (each gets a share from the first
    report on)."""
    return workers_of("saver", pair, workdir)


@contextlib.contextmanager
def workers_of(
    role: str, pair: Pair, workdir: Path, **env: str
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """`serve ROLE --workers 2`, both started; killed if still running at the end. Yields the
    process and its log."""
    log_path = workdir / f"{role}-workers.log"
    with open(log_path, "wb") as log:
        workers = subprocess.Popen(
            [sys.executable, "-m", "{{ cookiecutter.package_name }}", "serve", role, "--workers", "2"],
            env=pair.env(**env), cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while log_path.read_text(errors="replace").count(f":{role} started") < 2:
            assert workers.poll() is None, log_path.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, log_path.read_text(errors="replace")[-3000:]
            time.sleep(0.1)
        yield workers, log_path
    finally:
        if workers.poll() is None:  # a failed test: stop the workers too, not only the parent
            workers.terminate()
            try:
                workers.wait(30)
            except subprocess.TimeoutExpired:
                workers.kill()
                workers.wait()

def assert_both_workers_got_a_share(server: ApachePulsarServer, namespace: str) -> None:
    """The broker's own count: a Shared subscription with two consumers, each sent reports
    (an Exclusive one would refuse the second worker, a Failover one would feed only one)."""
    topic = f"persistent/public/{namespace}/{REPORT_TOPIC}"
    subscription = admin(server, "GET", f"{topic}/stats")["subscriptions"]["saver"]
    assert subscription["type"] == "Shared", subscription["type"]
    sent = [consumer["msgOutCounter"] for consumer in subscription["consumers"]]
    assert len(sent) == 2 and all(sent), f"reports sent to each worker: {sent}"
