"""The App: starts its servers in order, waits for SIGINT/SIGTERM, stops them in reverse.

After the servers, it runs its `after_stop` hooks (as Kratos' `AfterStop`): the composition
root passes the shutdown of the resources (broker connection, database engine) the servers
used, so whoever stops the App, the command line or a test, closes them too.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
from collections.abc import Awaitable, Callable, Sequence

from brokerline.server import Server

log = logging.getLogger(__name__)


class App:
    def __init__(
        self,
        name: str,
        servers: Sequence[Server],
        stop_timeout: float = 15.0,
        *,
        after_stop: Sequence[Callable[[], Awaitable[object]]] = (),
    ) -> None:
        self.name = name
        self.servers = list(servers)
        self.stop_timeout = stop_timeout
        self._after_stop = list(after_stop)
        self._started: list[Server] = []
        self._stop_requested = asyncio.Event()
        self._watchdog: threading.Timer | None = None

    def request_stop(self) -> None:
        if not self._stop_requested.is_set():
            self._arm_watchdog()
        self._stop_requested.set()

    def _arm_watchdog(self) -> None:
        """Exit anyway if stopping hangs (e.g. a client library blocking the event loop).

        Nothing is lost by it: whatever was not acknowledged is redelivered by the broker.
        """
        grace = self.stop_timeout * 2 + 10

        def give_up() -> None:
            log.error("%s did not stop within %.0fs; exiting without cleanup", self.name, grace)
            logging.shutdown()
            os._exit(70)

        self._watchdog = threading.Timer(grace, give_up)
        self._watchdog.daemon = True
        self._watchdog.start()

    async def start(self) -> None:
        for server in self.servers:
            await server.start()
            self._started.append(server)

    async def stop(self) -> None:
        """Stop the started servers in reverse order, each within the stop timeout; then run
        the `after_stop` hooks (once)."""
        while self._started:
            server = self._started.pop()
            try:
                await asyncio.wait_for(server.stop(self.stop_timeout), self.stop_timeout + 5)
            except TimeoutError:
                log.error("%s did not stop within %.0fs", server.name, self.stop_timeout)
            except Exception:
                log.exception("%s failed to stop cleanly", server.name)
        hooks, self._after_stop = self._after_stop, []
        for hook in hooks:
            try:
                await hook()
            except Exception:
                log.exception("%s: a clean-up after stop failed", self.name)
        if self._watchdog is not None:  # stopped in time: the process may live on (tests)
            self._watchdog.cancel()
            self._watchdog = None

    async def run(self) -> None:
        """Run until SIGINT or SIGTERM (or `request_stop()`), then stop gracefully.

        A stop requested while the servers still start (Ctrl-C in `dev` also stops the local
        broker under them) ends the start-up at once instead of waiting on a broker that is
        going away; the servers already started are stopped as usual.
        """
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.request_stop)
        starting = asyncio.ensure_future(self.start())
        stop_requested = asyncio.ensure_future(self._stop_requested.wait())
        try:
            await asyncio.wait({starting, stop_requested}, return_when=asyncio.FIRST_COMPLETED)
            if starting.done():
                starting.result()  # a start-up failure is the caller's error
                log.info("%s started (%s)", self.name, ", ".join(s.name for s in self.servers))
                await stop_requested
            else:
                starting.cancel()
                try:
                    await starting
                except asyncio.CancelledError:
                    pass
                except Exception as exc:  # the stop made it fail (e.g. the broker went away)
                    log.info("%s: start-up ended by the stop (%s)", self.name, exc)
            log.info("%s stopping", self.name)
        finally:
            starting.cancel()
            stop_requested.cancel()
            await self.stop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
        log.info("%s stopped", self.name)
