"""Transports that start and stop with the App: gRPC, the broker server, the ops server."""

from typing import Protocol


class Server(Protocol):
    """What the App runs: started in order, stopped in reverse order."""

    name: str

    async def start(self) -> None: ...

    async def stop(self, timeout: float) -> None: ...
