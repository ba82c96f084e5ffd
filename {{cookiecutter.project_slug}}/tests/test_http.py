"""HTTP/JSON beside gRPC: the README's curl line against `serve report` + `serve saver` over a
real broker, the same servicer answering both transports, the trace continued from an incoming
`traceparent` into the saver, and the OpenAPI document (command and served) validated.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from brokerline.core import known_types
from brokerline.core.embedded import start_embedded, wait_for_port
from openapi_spec_validator import validate

from .processes import Pair, post_reports, wait_for_rows

PACKAGE = "{{ cookiecutter.package_name }}"
PROJECT = Path(__file__).resolve().parent.parent
#: a broker that keeps what is published before the saver subscribes
BROKER = next((t for t in ("jetstream", "pulsar", "nats") if t in known_types()), "")
README_ADDRESS = "127.0.0.1:8000"
TRACE_ID, PARENT_ID = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"



def readme_curl(idempotent: bool = False) -> str:
    """The README's curl line of the HTTP section, or of the idempotent ingest section (the
    one with an Idempotency-Key): the test runs exactly what users read."""
    text = (PROJECT / "README.md").read_text()
    lines = [line.strip() for line in text.splitlines() if line.strip().startswith("curl ")]
    posting = [line for line in lines
               if "/v1/report" in line and ("Idempotency-Key" in line) == idempotent]
    assert posting, "the README has no such `curl ... /v1/report` line"
    return posting[0]


def run_curl(line: str, address: str, *extra: str) -> dict[str, Any]:
    """Run the README's curl line against `address` (with curl, or the same request by hand)."""
    args = shlex.split(line.replace(README_ADDRESS, address))[1:] + list(extra)
    if shutil.which("curl"):
        out = subprocess.run(["curl", "-sS", "--fail-with-body", *args], capture_output=True,
                             text=True, timeout=30)
        assert out.returncode == 0, out.stdout + out.stderr
        return dict(json.loads(out.stdout))
    method, headers, body, url = "GET", {}, "", ""
    words = iter(args)
    for word in words:
        if word == "-X":
            method = next(words)
        elif word == "-H":
            name, _, value = next(words).partition(":")
            headers[name.strip()] = value.strip()
        elif word == "-d":
            body = next(words)
        else:
            url = word
    host, _, path = url.removeprefix("http://").partition("/")
    conn = http.client.HTTPConnection(host, timeout=30)
    conn.request(method, "/" + path, body.encode(), headers)
    response = conn.getresponse()
    assert response.status == 200, response.read()
    return dict(json.loads(response.read()))


def read_spans(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    server = start_embedded(BROKER, tmp_path / "broker")
    pair = Pair(BROKER, server, tmp_path)
    try:
        yield pair
    finally:
        pair.stop_all()
        server.cleanup()


def post(
    address: str, body: str, content_type: str = "application/json", **headers: str
) -> tuple[int, Any]:
    conn = http.client.HTTPConnection(address, timeout=30)
    conn.request("POST", "/v1/report", body.encode(), {"Content-Type": content_type, **headers})
    response = conn.getresponse()
    return response.status, json.loads(response.read())


@pytest.mark.slow
@pytest.mark.skipif(not BROKER, reason="the pair of processes needs a broker server")
async def test_the_readme_curl_posts_a_report_that_the_saver_stores(
    pair: Pair, tmp_path: Path
) -> None:
    spans = {role: tmp_path / f"{role}.spans.jsonl" for role in ("report", "saver")}
    for role in ("saver", "report"):
        pair.start(role, OTEL_TRACES_EXPORTER="file", TELEMETRY_FILE=str(spans[role]))
    report = pair.services["report"]
    port = int(pair.http_address.rsplit(":", 1)[1])
    await asyncio.to_thread(wait_for_port, port, 60, report.process, "serve report (HTTP)")

    line = readme_curl()
    answer = await asyncio.to_thread(
        run_curl, line, pair.http_address, "-H", f"traceparent: 00-{TRACE_ID}-{PARENT_ID}-01")
    assert list(answer) == ["code", "msg", "eventId"], answer  # the proto's field order
    assert answer["code"] == 0 and answer["msg"] == "success", answer
    over_http = answer["eventId"]
    over_grpc = (await post_reports(pair.grpc_address, 1, concurrency=1)).accepted
    # the README's idempotent line, retried: the same event id, one row
    keyed_line = readme_curl(idempotent=True)
    keyed = [await asyncio.to_thread(run_curl, keyed_line, pair.http_address) for _ in "123"]
    assert len({a["eventId"] for a in keyed}) == 1, keyed
    key = re.search(r"Idempotency-Key: ([^'\"]+)", keyed_line)
    assert key, keyed_line
    differing = json.dumps({"userId": "u", "eventName": "e", "requestId": key[1] + "-other"})

    # the servicer's INVALID_ARGUMENT and the transport's refusals: 4xx with a Status body
    refusals = [
        (post, (pair.http_address, '{"userId": "", "eventName": "e", "content": "c"}'), 400),
        (post, (pair.http_address, '{"userId": "u", "colour": "red"}'), 400),
        (post, (pair.http_address, "{not json"), 400),
        (post, (pair.http_address, '{"userId": "u"}', "text/plain"), 415),
    ]
    for send, args, status in refusals:
        got, body = await asyncio.to_thread(send, *args)
        assert got == status and set(body) == {"code", "message", "details"}, body
    got, body = await asyncio.to_thread(
        post, pair.http_address, differing, **{"Idempotency-Key": key[1]})
    assert got == 400 and "Idempotency-Key header and the request_id field differ" in body[
        "message"], body

    stored = await wait_for_rows(pair.db_url, 3, timeout=60)
    await asyncio.sleep(1)  # time for a second row of the retried report, if one were coming
    stored = await wait_for_rows(pair.db_url, 3, timeout=60)
    # one servicer, two transports; the retried report once
    assert sorted(stored) == sorted([over_http, *over_grpc, keyed[0]["eventId"]])

    def traced() -> bool:
        return any(s["context"]["trace_id"] == f"0x{TRACE_ID}" for s in read_spans(
            spans["saver"]))

    await asyncio.to_thread(_wait, traced, 30)
    http_span = next(s for s in read_spans(spans["report"])
                     if s["name"] == "/report.v1.ReportService/PostReport"
                     and s["context"]["trace_id"] == f"0x{TRACE_ID}")
    assert http_span["parent_id"] == f"0x{PARENT_ID}"
    assert http_span["attributes"]["http.route"] == "/v1/report"
    log = report.log()
    assert "Traceback" not in log and "report-content" not in log


def _wait(predicate: Any, timeout: float) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "the saver has no span in the given trace"
        time.sleep(0.2)


def test_the_readme_has_the_status_mapping_of_the_library() -> None:
    from brokerline.server.http import HTTP_STATUS

    text = (PROJECT / "README.md").read_text()
    for code, status in HTTP_STATUS.items():
        if code.name != "OK":
            assert re.search(rf"\|\s*`?{code.name}`?\s*\|\s*{status}\s*\|", text), code.name


def test_the_openapi_command_prints_a_valid_document(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", PACKAGE, "openapi"], capture_output=True,
                         text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    document = json.loads(out.stdout)
    validate(document)
    post = document["paths"]["/v1/report"]["post"]
    body = post["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/report.v1.PostReportRequest"}
    request = document["components"]["schemas"]["report.v1.PostReportRequest"]
    assert set(request["properties"]) == {"userId", "eventName", "content", "requestId"}
    assert post["responses"]["503"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/google.rpc.Status"}
    headers = [p["name"] for p in post.get("parameters", []) if p["in"] == "header"]
    assert headers == ["Idempotency-Key"]
