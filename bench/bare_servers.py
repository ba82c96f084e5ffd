"""The practical limit of the ingest stack: servers that only answer PostReport.

`python bare_servers.py grpc|http ADDRESS [--processes N]`: grpc.aio with the generated
servicer interface, or uvicorn on httptools with a bare ASGI app; each parses the request
(protobuf / JSON) and answers a fresh event id, nothing else: no broker, no validation, no
tracing. With N processes they share the port (SO_REUSEPORT) like `serve report --workers N`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import signal
import socket
import uuid
from typing import Any

from common import asgi_body, asgi_json  # bench/ is on the path of a script run from it


def serve_grpc(address: str, reuse_port: bool) -> None:
    import grpc
    from report_pipeline.api.report.v1 import report_pb2, report_pb2_grpc

    class Bare(report_pb2_grpc.ReportServiceServicer):
        async def PostReport(self, request: Any, context: Any) -> Any:  # noqa: N802
            return report_pb2.PostReportReply(code=0, msg="success", event_id=uuid.uuid4().hex)

    async def main() -> None:
        server = grpc.aio.server(options=[("grpc.so_reuseport", int(reuse_port))])
        report_pb2_grpc.add_ReportServiceServicer_to_server(Bare(), server)
        server.add_insecure_port(address)
        await server.start()
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await server.stop(1)

    asyncio.run(main())


async def bare_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    json.loads(await asgi_body(receive) or b"{}")
    await asgi_json(send, json.dumps(
        {"code": 0, "msg": "success", "eventId": uuid.uuid4().hex}).encode())


def serve_http(address: str, reuse_port: bool) -> None:
    import uvicorn

    host, _, port = address.rpartition(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, int(port)))
    config = uvicorn.Config(bare_app, http="httptools", ws="none", lifespan="off",
                            log_level="warning", access_log=False, server_header=False)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("transport", choices=["grpc", "http"])
    p.add_argument("address")
    p.add_argument("--processes", type=int, default=1)
    args = p.parse_args()
    target = serve_grpc if args.transport == "grpc" else serve_http
    if args.processes == 1:
        target(args.address, False)
    else:
        children = [multiprocessing.Process(target=target, args=(args.address, True))
                    for _ in range(args.processes)]
        for child in children:
            child.start()
        signal.signal(signal.SIGTERM, lambda *_: [c.terminate() for c in children])
        for child in children:
            child.join()
