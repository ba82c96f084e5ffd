"""The gRPC server: grpc.aio with the health checking protocol and reflection."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from brokerline.server.request_decoding import RequestDecodingInterceptor
from brokerline.telemetry import grpc_server_interceptors

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GrpcService:
    """A servicer and how to add it: `add(servicer, server)` from the *_pb2_grpc module."""

    name: str  # the full service name, e.g. "report.v1.ReportService"
    servicer: object
    add: Callable[[object, grpc.aio.Server], None]


class GrpcServer:
    name = "grpc"

    def __init__(
        self, address: str, services: Sequence[GrpcService], max_message_bytes: int = 4 << 20,
        reuse_port: bool = False,
    ) -> None:
        self.address = address
        self.reuse_port = reuse_port
        self.services = list(services)
        self.max_message_bytes = max_message_bytes
        self.health = health.aio.HealthServicer()
        # undecodable request bytes -> INVALID_ARGUMENT, aggregated in the log, on every method
        self.request_decoding = RequestDecodingInterceptor()
        self._server: grpc.aio.Server | None = None
        self.port: int | None = None

    async def start(self) -> None:
        server = grpc.aio.server(
            # a server span per call; the request decoding guard last, next to the servicer
            interceptors=[*grpc_server_interceptors(), self.request_decoding],
            options=[
                ("grpc.max_receive_message_length", self.max_message_bytes),
                ("grpc.max_send_message_length", self.max_message_bytes),
                # gRPC sets SO_REUSEPORT unless told not to: a second server on a taken port
                # would share it silently; only `serve --workers N` shares one on purpose
                ("grpc.so_reuseport", int(self.reuse_port)),
            ]
        )
        for service in self.services:
            service.add(service.servicer, server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        names = [s.name for s in self.services]
        reflection.enable_server_reflection(
            [*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
             reflection.SERVICE_NAME],
            server,
        )
        try:
            self.port = server.add_insecure_port(self.address)
        except RuntimeError:
            self.port = 0
        if not self.port:
            raise OSError(
                f"cannot listen on {self.address} for gRPC; the port is taken or the address is "
                "wrong: set grpc.address (GRPC_ADDRESS) to a free host:port"
            )
        await server.start()
        self._server = server
        for name in ["", *names]:
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("gRPC listening on %s", self.address)

    async def stop(self, timeout: float) -> None:
        if self._server is None:
            return
        await self.health.enter_graceful_shutdown()
        # New calls are refused at once; calls in flight get `timeout` seconds to finish.
        await self._server.stop(grace=timeout)
        self._server = None
        self.request_decoding.log.close()
