{%- if cookiecutter.include_sample -%}
"""One PostReport, one trace, three processes, over a real broker.

`publish` (gRPC client), `serve report` and `serve saver` run as separate processes, each
exporting its spans to a JSON-lines file (`OTEL_TRACES_EXPORTER=file`). The test reads the
files back and follows the trace id from the client call to the saver's INSERT; it also
scrapes the saver's /metrics and reads its JSON log lines.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from brokerline.core import known_types
from brokerline.core.embedded import free_port, start_embedded, wait_for_port
from brokerline.core.registry import plugin_factory

PACKAGE = "{{ cookiecutter.package_name }}"
Span = dict[str, Any]


def real_brokers() -> list[str]:
    """The included broker types with a server process whose plugin can be imported yet."""
    found = []
    for type_name in known_types():
        try:
            plugin_factory(type_name)
        except ImportError:
            continue
        if type_name != "memory":
            found.append(type_name)
    return found


def read_spans(path: Path) -> list[Span]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout}s")
        time.sleep(0.2)


def stop_all(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM (the services flush their spans and drain), then wait; kill a straggler."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    stop_all(started)


@pytest.mark.slow
@pytest.mark.parametrize("broker_type", real_brokers())
def test_one_trace_across_the_client_report_and_saver_processes(
    tmp_path: Path, broker_type: str, processes: list[subprocess.Popen[bytes]]
) -> None:
    embedded = start_embedded(broker_type, store=tmp_path / "broker")
    try:
        grpc_port, metrics_port = free_port(), free_port()
        env = {
            **os.environ,
            "BROKER_TYPE": broker_type,
            "BROKER_ADDRESS": embedded.url,
            "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'trace.db'}",
            "GRPC_ADDRESS": f"127.0.0.1:{grpc_port}",
            "HTTP_ADDRESS": f"127.0.0.1:{free_port()}",
            "OTEL_TRACES_EXPORTER": "file",
            "LOG_FORMAT": "json",
        }
        files = {role: tmp_path / f"{role}.spans.jsonl" for role in ("client", "report", "saver")}
        roles = {
            "saver": {"LOG_LEVEL": "DEBUG", "OTEL_EXPORTER_PROMETHEUS_PORT": str(metrics_port)},
            "report": {},
        }
        for role, extra in roles.items():
            log = open(tmp_path / f"{role}.log", "wb")  # lives with the process
            processes.append(subprocess.Popen(
                [sys.executable, "-m", PACKAGE, "serve", role], cwd=tmp_path,
                env={**env, **extra, "TELEMETRY_FILE": str(files[role])},
                stdout=log, stderr=subprocess.STDOUT,
            ))
        wait_for_port(metrics_port, 60, processes[0], what="serve saver")
        wait_for_port(grpc_port, 60, processes[1], what="serve report")

        posted = subprocess.run(
            [sys.executable, "-m", PACKAGE, "publish", "--count", "1", "--concurrency", "1"],
            cwd=tmp_path, env={**env, "TELEMETRY_FILE": str(files["client"])},
            capture_output=True, text=True, timeout=120,
        )
        assert posted.returncode == 0, posted.stderr

        client = next(s for s in read_spans(files["client"]) if s["kind"] == "SpanKind.CLIENT")
        trace_id = client["context"]["trace_id"]

        def in_trace(role: str) -> list[Span]:
            return [s for s in read_spans(files[role]) if s["context"]["trace_id"] == trace_id]

        def saver_inserted() -> bool:
            return any(s["kind"] == "SpanKind.CLIENT" and "INSERT" in s["name"]
                       for s in in_trace("saver"))

        wait_until(saver_inserted, 60, "an INSERT span in the saver's trace")
    finally:
        stop_all(processes)  # before the broker goes away
        embedded.cleanup()

    report, saver = in_trace("report"), in_trace("saver")
    by_id = {s["context"]["span_id"]: s for s in [*report, *saver]}
    server = next(s for s in report if s["kind"] == "SpanKind.SERVER")
    assert server["name"].endswith("/PostReport")
    assert server["parent_id"] == client["context"]["span_id"]
    producers = [s for s in report if s["kind"] == "SpanKind.PRODUCER"]
    assert producers and all(p["parent_id"] == server["context"]["span_id"] for p in producers)
    consumers = [s for s in saver if s["kind"] == "SpanKind.CONSUMER"]
    assert consumers and all(by_id[c["parent_id"]]["kind"] == "SpanKind.PRODUCER"
                             for c in consumers)
    assert consumers[0]["attributes"]["messaging.system"] == broker_type
    assert consumers[0]["attributes"]["messaging.consumer.group.name"] == "saver"
    insert = next(s for s in saver if s["kind"] == "SpanKind.CLIENT" and "INSERT" in s["name"])
    ancestor = insert  # the INSERT runs inside a consumer span, in the saver process
    while ancestor["kind"] != "SpanKind.CONSUMER":
        ancestor = by_id[ancestor["parent_id"]]
    assert {s["resource"]["attributes"]["service.name"] for s in (client, server, insert)} == {
        "report-pipeline-client", "report-pipeline-report", "report-pipeline-saver"}

    # the saver's log lines written inside the handler carry the trace id
    # (the Pulsar C++ client writes its own, non-JSON lines to the same stream)
    saver_log = (tmp_path / "saver.log").read_text(errors="replace").splitlines()
    records = [json.loads(line) for line in saver_log if line.startswith('{"time"')]
    assert any(r.get("trace_id") == trace_id.removeprefix("0x") for r in records), saver_log[-20:]


@pytest.mark.slow
@pytest.mark.parametrize("broker_type", real_brokers())
def test_saver_metrics_move_over_a_real_broker(
    tmp_path: Path, broker_type: str, processes: list[subprocess.Popen[bytes]]
) -> None:
    """`serve saver` exposes /metrics; messages it handles move the counters."""
    embedded = start_embedded(broker_type, store=tmp_path / "broker")
    try:
        metrics_port, grpc_port = free_port(), free_port()
        env = {**os.environ, "BROKER_TYPE": broker_type, "BROKER_ADDRESS": embedded.url,
               "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'm.db'}",
               "GRPC_ADDRESS": f"127.0.0.1:{grpc_port}",
               "HTTP_ADDRESS": f"127.0.0.1:{free_port()}",
               "OTEL_EXPORTER_PROMETHEUS_PORT": str(metrics_port)}
        for role in ("saver", "report"):
            log = open(tmp_path / f"{role}.log", "wb")  # lives with the process
            processes.append(subprocess.Popen(
                [sys.executable, "-m", PACKAGE, "serve", role], cwd=tmp_path,
                env={**env, "OTEL_EXPORTER_PROMETHEUS_PORT": str(
                    metrics_port if role == "saver" else free_port())},
                stdout=log, stderr=subprocess.STDOUT))
        wait_for_port(metrics_port, 60, processes[0], what="serve saver")
        wait_for_port(grpc_port, 60, processes[1], what="serve report")
        url = f"http://127.0.0.1:{metrics_port}/metrics"

        def acked() -> float:
            with urllib.request.urlopen(url, timeout=5) as reply:
                text = reply.read().decode()
            return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                       if line.startswith("messaging_client_acked_messages_total{"))

        assert acked() == 0
        posted = subprocess.run(
            [sys.executable, "-m", PACKAGE, "publish", "--count", "5"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert posted.returncode == 0, posted.stderr
        wait_until(lambda: acked() >= 10, 60, "10 acked messages (5 reports, 2 topics)")
    finally:
        stop_all(processes)
        embedded.cleanup()
{%- else -%}
"""(The cross-process trace tests need the report/saver sample.)"""
{% endif %}
