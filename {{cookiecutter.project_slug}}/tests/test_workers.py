"""`serve saver --workers 2`: two processes in one JetStream consumer group store every event once.

JetStream, not Pulsar: pulsar-lite refuses a second consumer on a subscription (Apache Pulsar
shares it), so the Pulsar variant needs a real cluster.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from brokerline.nats.embedded import nats_server

from .processes import Pair, post_reports, wait_for_rows

pytestmark = pytest.mark.slow

COUNT = 400


def test_two_saver_workers_store_every_event_exactly_once(tmp_path: Path) -> None:
    broker = nats_server(store=tmp_path / "nats").start()
    pair = Pair("jetstream", broker, tmp_path)
    log = open(tmp_path / "saver-workers.log", "wb")
    workers = subprocess.Popen(
        [sys.executable, "-m", "{{ cookiecutter.package_name }}", "serve", "saver", "--workers", "2"],
        env=pair.env(), cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        pair.start("report")
        result = asyncio.run(post_reports(pair.grpc_address, COUNT, concurrency=16))
        assert len(result.accepted) == COUNT, result.refused
        stored = asyncio.run(wait_for_rows(pair.db_url, COUNT, timeout=60))
        duplicates = [i for i, n in Counter(stored).items() if n > 1]
        assert not duplicates
        assert sorted(stored) == sorted(result.accepted)
        log_path = tmp_path / "saver-workers.log"
        # both workers up (one may still be starting on a busy machine): then a stop, not a
        # stop during start-up, is what this test checks
        deadline = time.monotonic() + 60
        while log_path.read_text(errors="replace").count(":saver started") < 2:
            assert time.monotonic() < deadline, log_path.read_text(errors="replace")[-3000:]
            time.sleep(0.1)
        workers.send_signal(signal.SIGTERM)
        assert workers.wait(60) == 0, log_path.read_text(errors="replace")[-3000:]
        assert "started 2 saver workers" in log_path.read_text(errors="replace")
    finally:
        if workers.poll() is None:
            workers.kill()
            workers.wait()
        log.close()
        pair.stop_all()
        broker.cleanup()
