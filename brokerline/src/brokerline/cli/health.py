"""The `health` command: ask a running service whether it is ready, as a probe would.

By default it calls the gRPC health checking protocol at `grpc.address`; with `--url` it
asks an HTTP endpoint instead (`/readyz` of a role without gRPC, such as the saver). It
prints the state and exits 0 when SERVING / ready, 1 when not, 2 when nothing answers.
"""

from __future__ import annotations

import argparse
import asyncio
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from brokerline.cli.arguments import http_url, positive_seconds
from brokerline.config import ServiceConfig
from brokerline.logs import configure_logging


def add_health_command(sub: Any, load_config: Callable[[str | None], ServiceConfig]) -> None:
    """`health`, reading the service's configuration with `load_config`."""
    p = sub.add_parser("health", help="ask a running service whether it is ready (exit 0 if so)")
    p.add_argument("--target", help="host:port of its gRPC server (default: grpc.address)")
    p.add_argument("--url", type=http_url,
                   help="an HTTP readiness URL instead, e.g. http://127.0.0.1:9464/readyz")
    p.add_argument("--service", default="", help="a gRPC service name (default: the server)")
    p.add_argument("--timeout", type=positive_seconds, default=5.0,
                   help="seconds to wait for an answer")
    p.set_defaults(func=lambda args: cmd_health(args, load_config(args.config)))


async def grpc_health(target: str, service: str, timeout: float) -> str:
    """The serving status name (SERVING, NOT_SERVING, ...); OSError if nothing answers."""
    import grpc  # here, not at the top: only this command needs it
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    async with grpc.aio.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=service),
                                     timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return "SERVICE_UNKNOWN"
            raise OSError(f"no gRPC health service answers at {target} ({exc.code().name}); "
                          "is the service running? set --target or grpc.address") from None
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


def http_health(url: str, timeout: float) -> tuple[bool, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            return True, reply.read().decode(errors="replace").strip()
    except urllib.error.HTTPError as exc:  # 503: answered, not ready
        return False, exc.read().decode(errors="replace").strip()
    except (urllib.error.URLError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise OSError(f"nothing answers at {url} ({reason}); is the service running with "
                      "telemetry.metrics_port (OTEL_EXPORTER_PROMETHEUS_PORT) set?") from None


def cmd_health(args: argparse.Namespace, config: ServiceConfig) -> None:
    configure_logging("WARNING", config.telemetry.log_format)
    if args.url:
        ok, body = http_health(args.url, args.timeout)
        print(body)
    else:
        status = asyncio.run(grpc_health(args.target or config.grpc.address, args.service,
                                         args.timeout))
        print(status)
        ok = status == "SERVING"
    raise SystemExit(0 if ok else 1)
