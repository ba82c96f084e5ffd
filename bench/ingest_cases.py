"""Ingest throughput: reports/s accepted by `serve report` over gRPC and over HTTP/JSON.

The load generator is h2load (nghttp2-client, C, one thread): unary gRPC is one HTTP/2 POST
with a 5-byte-framed protobuf body, so h2load drives it as well as HTTP/1.1 JSON (`--h1`).
Same client, same run, against:
- a bare server on the same stack that only answers (bare_servers.py): the practical limit;
- `serve report` (1 worker, then `--workers 2` on one port) publishing to JetStream and
  answering after the broker's ack. Every 2xx counted is checked against the service's own
  count of published reports (its /metrics), so a gRPC error in the trailers is not counted.
The load generator's CPU seconds per request are reported, to show it is not the bottleneck.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from brokerline.core.embedded import free_port, wait_for_port
from common import Result

BARE = Path(__file__).with_name("bare_servers.py")
REPORT_TOPIC = "events.realtime-warehousing"
GRPC_PATH = "/report.v1.ReportService/PostReport"
#: requests in flight for both transports: gRPC 32 connections x 4 streams, HTTP/1.1 128
#: connections (no multiplexing); many connections so SO_REUSEPORT spreads them over workers
GRPC_LOAD = ["-c", "32", "-m", "4"]
HTTP_LOAD = ["-c", "128", "-m", "1", "--h1"]
REPORT_JSON = {"user_id": "user-1", "event_name": "page_view", "content": "x" * 16}


def h2load_missing() -> str | None:
    if shutil.which("h2load"):
        return None
    return ("ingest skipped: h2load not found; install it with `apt-get install nghttp2-client` "
            "(Debian's package of the nghttp2 load generator)")


def bodies(work: Path) -> tuple[Path, Path]:
    """The request bodies: a gRPC frame (flag 0, big-endian length, the message) and JSON."""
    from report_pipeline.api.report.v1 import report_pb2

    message = report_pb2.PostReportRequest(**REPORT_JSON).SerializeToString()
    grpc_body, http_body = work / "report.grpc", work / "report.json"
    grpc_body.write_bytes(b"\x00" + len(message).to_bytes(4, "big") + message)
    http_body.write_text(json.dumps(REPORT_JSON))
    return grpc_body, http_body


def h2load(url: str, body: Path, load: list[str], seconds: float, headers: list[str]) -> dict:
    """Run h2load for `seconds` (after a 1 s warm-up); its counts, rate and CPU per request."""
    argv = ["h2load", "-t", "1", *load, "-D", str(max(1, round(seconds))), "--warm-up-time", "1",
            "-d", str(body), *(arg for h in headers for arg in ("-H", h)), url]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    text = out.stdout + out.stderr
    rate = re.search(r"finished in [\d.]+s, ([\d.]+) req/s", text)
    counts = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded", text)
    codes = re.search(r"status codes: (\d+) 2xx", text)
    if out.returncode or not (rate and counts and codes):
        raise RuntimeError(f"h2load failed ({' '.join(argv)}):\n{text[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    done = int(counts.group(2))
    return {"rate": float(rate.group(1)), "done": done, "ok": int(codes.group(1)),
            "client_cpu_us": cpu / max(done, 1) * 1e6}


@contextlib.contextmanager
def process(argv: list[str], env: dict[str, str], log: Path, *ports: int) -> Iterator[None]:
    """Run `argv` until the block ends (SIGTERM), once every one of `ports` answers."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        for port in ports:
            wait_for_port(port, 60, proc, what=" ".join(argv[-4:]))
        time.sleep(0.5)  # every worker bound (the first one answering is enough to connect)
        yield
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def published(metrics_ports: list[int]) -> int:
    """Reports the service published to the saver's topic, summed over its workers' /metrics."""
    total = 0.0
    for port in metrics_ports:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/metrics")
        for line in conn.getresponse().read().decode().splitlines():
            if (line.startswith("messaging_client_sent_messages_total")
                    and f'messaging_destination_name="{REPORT_TOPIC}"' in line):
                total += float(line.rsplit(" ", 1)[1])
    return int(total)


def two_free_ports() -> int:
    """A port P with P + 1 free too (`serve --workers` gives worker i P + i for metrics)."""
    import socket

    while True:
        port = free_port()
        with contextlib.suppress(OSError), socket.socket() as probe:
            probe.bind(("127.0.0.1", port + 1))
            return port


def measure(transport: str, port: int, grpc_body: Path, http_body: Path, seconds: float) -> dict:
    if transport == "gRPC":
        return h2load(f"http://127.0.0.1:{port}{GRPC_PATH}", grpc_body, GRPC_LOAD, seconds,
                      ["content-type: application/grpc", "te: trailers"])
    return h2load(f"http://127.0.0.1:{port}/v1/report", http_body, HTTP_LOAD, seconds,
                  ["content-type: application/json"])


def ingest_round(nats_url: str, project: Path, seconds: float) -> list[Result]:
    """One round: for each transport, bare 1 process, service 1 worker, bare 2, service 2."""
    work = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    grpc_body, http_body = bodies(work)
    results = []
    for transport in ("gRPC", "HTTP"):
        case = f"ingest over {transport} (reports/s)"
        for workers in (1, 2):
            # the bare server on the same stack
            port = free_port()
            bare = [sys.executable, str(BARE), "grpc" if transport == "gRPC" else "http",
                    f"127.0.0.1:{port}", "--processes", str(workers)]
            with process(bare, dict(os.environ), work / f"bare-{transport}-{workers}.log", port):
                run = measure(transport, port, grpc_body, http_body, seconds)
            plural = "es" if workers > 1 else ""
            results.append(Result(case, f"bare server, {workers} process{plural}", run["rate"],
                                  note=f"h2load {run['client_cpu_us']:.0f} us CPU/request"))
            # the service: serve report, publishing to JetStream
            grpc_port, http_port, metrics = free_port(), free_port(), two_free_ports()
            env = {**os.environ, "BROKER_TYPE": "jetstream", "BROKER_ADDRESS": nats_url,
                   "GRPC_ADDRESS": f"127.0.0.1:{grpc_port}",
                   "HTTP_ADDRESS": f"127.0.0.1:{http_port}",
                   "OTEL_EXPORTER_PROMETHEUS_PORT": str(metrics), "LOG_LEVEL": "WARNING"}
            argv = [sys.executable, "-m", "report_pipeline", "serve", "report",
                    *(["--workers", str(workers)] if workers > 1 else [])]
            port = grpc_port if transport == "gRPC" else http_port
            with process(argv, env, work / f"report-{transport}-{workers}.log", port,
                         *(metrics + i for i in range(workers))):
                before = published([metrics + i for i in range(workers)])
                run = measure(transport, port, grpc_body, http_body, seconds)
                stored = published([metrics + i for i in range(workers)]) - before
            note = f"h2load {run['client_cpu_us']:.0f} us CPU/request"
            # warm-up requests are published too: the count covers at least the measured ones
            if stored < run["ok"]:
                note += f"; only {stored} of {run['ok']} answered 2xx were published"
            side = f"serve report, {workers} worker{'s' if workers > 1 else ''}"
            results.append(Result(case, side, run["rate"], note=note))
    return results


async def ingest(nats_url: str, project: Path, seconds: float) -> list[Result]:
    return await asyncio.to_thread(ingest_round, nats_url, project, seconds)
