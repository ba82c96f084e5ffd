"""Which HTTP stack the HTTP/JSON transport is built on: requests/s for a POST JSON echo.

Each candidate serves `POST /echo` (parse the JSON body, answer it back as JSON) on a free
loopback port in its own process, on the default asyncio event loop, HTTP/1.1 keep-alive; the
same load generator drives each in turn: `wrk` (Debian's package) with a POST script when it
is installed, else several `http.client` keep-alive client processes. Rounds interleave the
stacks (`--repeat`) and each row is its median round. Not a test: it asserts nothing.

    python bench/http_stacks.py [--seconds 5] [--connections 32] [--repeat 3]

needs: aiohttp, uvicorn, httptools, starlette, h11 (bench only; brokerline needs uvicorn and
httptools, the stack this chose)
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

from common import asgi_body, asgi_json

BODY = json.dumps({"userId": "u-1", "eventName": "page_view",
                   "content": "x" * 64}).encode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the servers (each runs in a child process until killed) --------------------------------


def serve_aiohttp_web(port: int) -> None:
    from aiohttp import web

    async def echo(request: web.Request) -> web.Response:
        return web.json_response(json.loads(await request.read()))

    app = web.Application()
    app.router.add_post("/echo", echo)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def serve_aiohttp_lowlevel(port: int) -> None:
    import asyncio

    from aiohttp import web

    async def echo(request: web.BaseRequest) -> web.Response:
        return web.Response(body=json.dumps(json.loads(await request.read())).encode(),
                            content_type="application/json")

    async def main() -> None:
        runner = web.ServerRunner(web.Server(echo), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        await asyncio.Event().wait()

    asyncio.run(main())


async def _asgi_echo(scope: dict, receive: Callable, send: Callable) -> None:  # type: ignore[type-arg]
    if scope["type"] != "http":
        return
    await asgi_json(send, json.dumps(json.loads(await asgi_body(receive))).encode())


def serve_uvicorn_asgi(port: int) -> None:
    import uvicorn

    uvicorn.run(_asgi_echo, host="127.0.0.1", port=port, loop="asyncio", http="httptools",
                access_log=False, log_level="warning", lifespan="off")


def serve_uvicorn_starlette(port: int) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def echo(request: Request) -> JSONResponse:
        return JSONResponse(json.loads(await request.body()))

    app = Starlette(routes=[Route("/echo", echo, methods=["POST"])])
    uvicorn.run(app, host="127.0.0.1", port=port, loop="asyncio", http="httptools",
                access_log=False, log_level="warning", lifespan="off")


def serve_h11_asyncio(port: int) -> None:
    """A bare asyncio server over h11: the floor of what hand-written HTTP would cost."""
    import asyncio

    import h11

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        body = b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await reader.read(65536)
                if not data:
                    break
                conn.receive_data(data)
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                out = json.dumps(json.loads(body)).encode()
                writer.write(conn.send(h11.Response(status_code=200, headers=[
                    ("content-type", "application/json"), ("content-length", str(len(out)))])))
                writer.write(conn.send(h11.Data(data=out)))
                writer.write(conn.send(h11.EndOfMessage()))
                await writer.drain()
                body = b""
                conn.start_next_cycle()
            elif isinstance(event, h11.ConnectionClosed):
                break
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port)
        await server.serve_forever()

    asyncio.run(main())


STACKS: dict[str, Callable[[int], None]] = {
    "aiohttp (web.Application)": serve_aiohttp_web,
    "aiohttp (low-level web.Server)": serve_aiohttp_lowlevel,
    "uvicorn+httptools (bare ASGI)": serve_uvicorn_asgi,
    "uvicorn+httptools+Starlette": serve_uvicorn_starlette,
    "asyncio+h11 (hand-written)": serve_h11_asyncio,
}


def wait_for(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"no server on port {port}")


# -- the load generators --------------------------------------------------------------------

WRK_SCRIPT = """wrk.method = "POST"
wrk.body = '%s'
wrk.headers["Content-Type"] = "application/json"
"""


def load_wrk(port: int, seconds: float, connections: int) -> float:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT % BODY.decode())
    try:
        out = subprocess.run(
            ["wrk", "-t2", f"-c{connections}", f"-d{seconds:g}s", "-s", script.name,
             f"http://127.0.0.1:{port}/echo"], capture_output=True, text=True, check=True,
        ).stdout
    finally:
        os.unlink(script.name)
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"errors under load:\n{out}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert match, out
    return float(match.group(1))


def _client(port: int, seconds: float, counts: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    conn = http.client.HTTPConnection("127.0.0.1", port)  # one keep-alive connection
    headers = {"Content-Type": "application/json"}
    done, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        conn.request("POST", "/echo", BODY, headers)
        response = conn.getresponse()
        response.read()
        assert response.status == 200
        done += 1
    counts.put(done)


def load_clients(port: int, seconds: float, connections: int) -> float:
    counts: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    procs = [multiprocessing.Process(target=_client, args=(port, seconds, counts))
             for _ in range(connections)]
    for p in procs:
        p.start()
    total = sum(counts.get() for _ in procs)
    for p in procs:
        p.join()
    return total / seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--clients", action="store_true",
                        help="http.client processes even when wrk is installed")
    args = parser.parse_args()
    use_wrk = shutil.which("wrk") is not None and not args.clients
    load = load_wrk if use_wrk else load_clients
    connections = args.connections if use_wrk else min(args.connections, 4)
    print(f"load: {'wrk -t2' if use_wrk else 'http.client processes'}, {connections} "
          f"keep-alive connections, {args.seconds:g} s a round, {args.repeat} rounds")
    rounds: dict[str, list[float]] = {name: [] for name in STACKS}
    for _ in range(args.repeat):
        for name, serve in STACKS.items():
            port = free_port()
            server = multiprocessing.Process(target=serve, args=(port,), daemon=True)
            server.start()
            try:
                wait_for(port)
                rounds[name].append(load(port, args.seconds, connections))
            finally:
                server.kill()
                server.join()
    print("\n| HTTP stack: POST JSON echo | requests/s (median) | rounds |\n|---|---:|---|")
    for name, values in rounds.items():
        shown = ", ".join(f"{v:.0f}" for v in values)
        print(f"| {name} | {statistics.median(values):.0f} | {shown} |")
    print(f"\n{sys.version.split()[0]}, {os.cpu_count()} cores, load generator on the same "
          "machine")
    return 0


if __name__ == "__main__":
    sys.exit(main())
