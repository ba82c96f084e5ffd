"""Flow control: a subscription stops taking messages while a dependency is down.

When a handler fails with a transient error (`transient.is_transient`: the database is
unreachable, a connection dropped, a timeout), the Dispatcher does not settle the message and
does not count a delivery: it holds the message here. The first hold pauses the subscription:

- its plugin stops fetching (JetStream stops pulling, Pulsar and the memory broker stop taking
  from their queues; NATS core holds its delivery callback, so the client buffers);
- readiness reports NOT ready with the reason (`FlowRegistry.paused()`);
- held messages are tried again one at a time, with a capped backoff: each is a probe;
- the first handler call that succeeds, or the first retry of a held message that fails
  for a reason of its own, resumes the subscription and releases every held message at once.

One log line per state change, never one per message. Closing a subscription releases the
held messages as "redeliver": the broker hands them to the next consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from brokerline.core.base import Backoff
from brokerline.core.transient import describe_failure

log = logging.getLogger("broker")

#: how often a paused subscription probes its dependency: 0.25 s, doubling, at most 5 s
PROBE_BACKOFF = Backoff(initial=0.25, multiplier=2.0, maximum=5.0)


class Released(Exception):
    """The subscription closed while the message was held: hand it back to the broker."""


class FlowControl:
    """The pause state of one subscription (see the module docstring)."""

    def __init__(
        self, name: str, backoff: Backoff = PROBE_BACKOFF,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self.reason: str | None = None  # why it is paused; None while it runs
        self.held = 0  # messages waiting for the dependency
        self._backoff = backoff
        self._on_change = on_change
        self._open = asyncio.Event()
        self._open.set()
        self._closing = asyncio.Event()
        self._turn = asyncio.Lock()  # while paused, one held message probes at a time
        self._probes = 0
        self._paused_at = 0.0

    @property
    def paused(self) -> bool:
        return self.reason is not None

    @property
    def released(self) -> bool:
        return self._closing.is_set()

    async def wait_open(self) -> None:
        """Returns at once while running; while paused, when the subscription resumes."""
        if self.reason is not None:
            await self._open.wait()

    async def hold(self, exc: BaseException) -> None:
        """Wait until the message whose handler raised the transient `exc` may try again.

        Raises `Released` when the subscription closes meanwhile.
        """
        if self._closing.is_set():
            raise Released
        if self.reason is None:
            self._pause(exc)
        self.held += 1
        try:
            async with self._turn:
                if self.reason is not None and not self._closing.is_set():
                    delay = self._backoff.delay(self._probes)
                    self._probes += 1
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(delay):
                            await self._closing.wait()
        finally:
            self.held -= 1
        if self._closing.is_set():
            raise Released

    def answered(self) -> None:
        """The dependency answered a handler call: resume if paused."""
        if self.reason is not None:
            self._resume()

    def release(self) -> None:
        """The subscription is closing: held messages stop waiting; fetching may end."""
        self._closing.set()
        if self.reason is not None:
            self._resume(quiet=True)

    def _pause(self, exc: BaseException) -> None:
        self.reason = f"a dependency is unavailable ({describe_failure(exc)})"
        self._paused_at = time.monotonic()
        self._probes = 0
        self._open.clear()
        log.warning("%s paused: %s; holding its messages (not counted as deliveries) and "
                    "retrying until it answers", self.name, self.reason)
        if self._on_change is not None:
            self._on_change()

    def _resume(self, quiet: bool = False) -> None:
        self.reason = None
        self._open.set()
        if not quiet:
            log.info("%s resumed after %.1fs (%d retries)", self.name,
                     time.monotonic() - self._paused_at, self._probes)
        if self._on_change is not None:
            self._on_change()


class FlowRegistry:
    """The flow controls of one broker connection, for readiness."""

    def __init__(self) -> None:
        self._flows: list[FlowControl] = []
        #: called on every pause and resume (the ops server re-checks readiness at once)
        self.listeners: list[Callable[[], None]] = []

    def new(self, name: str) -> FlowControl:
        """The flow control of a new subscription; `release()` it when the subscription closes."""
        self._flows = [f for f in self._flows if not f.released]
        flow = FlowControl(name, on_change=self._changed)
        self._flows.append(flow)
        return flow

    def paused(self) -> dict[str, str]:
        """Paused subscription -> why."""
        return {f.name: f.reason for f in self._flows if f.reason is not None}

    def _changed(self) -> None:
        for listener in self.listeners:
            listener()
