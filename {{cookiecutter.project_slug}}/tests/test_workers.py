"""`serve saver --workers 2`: two processes in one consumer group store every event once.

On JetStream (one durable consumer) and on Apache Pulsar (one Shared subscription, the
session's standalone in a namespace of this test's). Not on pulsar-lite: it refuses a second
consumer on a subscription.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from brokerline.core import known_types
from brokerline.testing.apache_pulsar import ApachePulsarServer
from brokerline.testing.apache_pulsar.admin import admin
from brokerline.testing.brokers import APACHE_PULSAR

from .processes import REPORT_TOPIC, Pair, post_reports, running_pair, wait_for_rows

SHARED_GROUPS = (["jetstream"] if "jetstream" in known_types() else []) + (
    [APACHE_PULSAR] if "pulsar" in known_types() else []
) + (["kafka"] if "kafka" in known_types() else [])  # a consumer group over 3 partitions

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not SHARED_GROUPS, reason="needs the jetstream, pulsar or kafka plugin"),
]

COUNT = 400


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


def worker_pids(log_path: Path) -> list[int]:
    """The workers' pids, as the supervisor logged them."""
    found = re.search(r"started 2 saver workers: (\d+), (\d+)", log_path.read_text())
    assert found, log_path.read_text(errors="replace")[-3000:]
    return [int(pid) for pid in found.groups()]


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's exit waits for whoever reaps it)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


@contextlib.contextmanager
def saver_workers(pair: Pair, workdir: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """`serve saver --workers 2`, both workers subscribed (each gets a share from the first
    report on); killed if still running at the end. Yields the process and its log."""
    log_path = workdir / "saver-workers.log"
    with open(log_path, "wb") as log:
        workers = subprocess.Popen(
            [sys.executable, "-m", "{{ cookiecutter.package_name }}", "serve", "saver", "--workers", "2"],
            env=pair.env(), cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while log_path.read_text(errors="replace").count(":saver started") < 2:
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
