"""What a grpc.aio servicer is given as `context` when the call came over HTTP.

The same servicer instance serves both transports, so it gets the methods it uses on a
`grpc.aio.ServicerContext`: `abort` (raises, as grpc.aio does), `set_code`/`set_details`,
`invocation_metadata` (the HTTP headers, lower case, as gRPC metadata), `peer`,
`time_remaining`, and the response-metadata calls (their values become response headers).
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc

Metadata = tuple[tuple[str, str | bytes], ...]

# headers that describe the HTTP connection, not the call: never handed on as metadata
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "upgrade", "te",
                         "content-length", "host"})


class Aborted(Exception):
    """Raised by `abort`: the servicer ends the call with a status (not an error of ours)."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


class HttpServicerContext:
    """A `grpc.aio.ServicerContext` stand-in for one HTTP call."""

    def __init__(self, headers: Sequence[tuple[bytes, bytes]], peer: str) -> None:
        self._metadata: Metadata = tuple(
            (name.decode("latin-1").lower(), value.decode("latin-1"))
            for name, value in headers if name.decode("latin-1").lower() not in _HOP_BY_HOP
        )
        self._peer = peer
        self.code: grpc.StatusCode | None = None
        self.details = ""
        self.response_headers: list[tuple[str, str]] = []

    async def abort(
        self, code: grpc.StatusCode, details: str = "", trailing_metadata: Metadata = ()
    ) -> None:
        if code == grpc.StatusCode.OK:
            raise ValueError("abort() needs a non-OK status code")
        self.set_trailing_metadata(trailing_metadata)
        raise Aborted(code, details)

    def set_code(self, code: grpc.StatusCode) -> None:
        self.code = code

    def set_details(self, details: str) -> None:
        self.details = details

    def code_set(self) -> grpc.StatusCode | None:
        return self.code

    def invocation_metadata(self) -> Metadata:
        return self._metadata

    def peer(self) -> str:
        return self._peer

    def time_remaining(self) -> float | None:
        return None  # HTTP carries no deadline

    def cancelled(self) -> bool:
        return False

    def done(self) -> bool:
        return False

    async def send_initial_metadata(self, initial_metadata: Metadata) -> None:
        self._add_headers(initial_metadata)

    def set_trailing_metadata(self, trailing_metadata: Metadata) -> None:
        self._add_headers(trailing_metadata)

    def _add_headers(self, metadata: Metadata) -> None:
        for key, value in metadata:
            if not key.endswith("-bin"):  # binary metadata has no HTTP/1.1 header form
                self.response_headers.append((f"grpc-metadata-{key}", str(value)))


def peer_of(client: tuple[str, int] | None) -> str:
    """`ipv4:127.0.0.1:53124`: gRPC's way of naming the caller."""
    if client is None:
        return "unknown"
    host, port = client
    return f"ipv6:[{host}]:{port}" if ":" in host else f"ipv4:{host}:{port}"
