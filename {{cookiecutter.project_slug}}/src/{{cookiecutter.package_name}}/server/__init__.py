"""The server layer: transports that start and stop with the app (gRPC, broker)."""

from typing import Protocol


class Server(Protocol):
    """What the App runs: started in order, stopped in reverse order."""

    name: str

    async def start(self) -> None: ...

    async def stop(self, timeout: float) -> None: ...
