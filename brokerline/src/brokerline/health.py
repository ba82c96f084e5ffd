"""Readiness: periodic checks of the broker connection and the database.

`HealthMonitor` runs each check every `interval` seconds (each bounded by a timeout) and
keeps the result; listeners hear about every change (the gRPC health servicer is one: it
answers SERVING only while every check passes). The checks are those of the resources the
running role uses: `report` checks the broker, `saver` and `all` the broker, the database and
its subscriptions (NOT ready while one is paused because a dependency is down). A check that
fails with `NotReady(reason)` reports that reason (`/readyz` shows it); any other exception
reports its type.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

from opentelemetry.instrumentation.utils import suppress_instrumentation

if TYPE_CHECKING:  # SQLAlchemy is imported by the roles that open a database only
    from brokerline.core import Broker
    from brokerline.sql.database import Database

log = logging.getLogger(__name__)

Check = Callable[[], Awaitable[bool]]
Listener = Callable[[bool], Awaitable[None]]


class NotReady(Exception):
    """A check's answer "not ready", with the reason to show."""


def subscriptions_check(broker: Broker) -> Check:
    """Ready while no subscription of `broker` is paused for an unavailable dependency."""

    async def check() -> bool:
        paused = broker.flows.paused()
        if paused:
            raise NotReady("; ".join(f"{name} paused: {why}" for name, why in paused.items()))
        return True

    return check


def database_check(db: Database) -> Check:
    from sqlalchemy import text

    async def check() -> bool:
        with suppress_instrumentation():  # a probe every few seconds is not a trace
            async with db.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        return True

    return check


class HealthMonitor:
    def __init__(self, checks: Mapping[str, Check], interval: float = 5.0) -> None:
        self.checks = dict(checks)
        self.interval = interval
        self.timeout = max(1.0, min(interval, 5.0))
        self.status: dict[str, bool] = dict.fromkeys(self.checks, False)
        self.reasons: dict[str, str] = {}  # check -> why it is down
        self.listeners: list[Listener] = []
        self._task: asyncio.Task[None] | None = None
        self._poked: asyncio.Task[bool] | None = None
        self._ready: bool | None = None  # unknown until the first round

    @property
    def ready(self) -> bool:
        return bool(self._ready)

    async def _run_one(self, name: str, check: Check) -> bool:
        try:
            ok = bool(await asyncio.wait_for(check(), self.timeout))
        except Exception as exc:  # a failing check is a "down", whatever it raised
            reason = str(exc) if isinstance(exc, NotReady) else type(exc).__name__
            if self.status.get(name, True) or self.reasons.get(name) != reason:
                log.warning("health: %s is down (%s)", name, reason)
            self.reasons[name] = reason
            return False
        if ok:
            self.reasons.pop(name, None)
        return ok

    def poke(self) -> None:
        """Check again now (a subscription paused or resumed), not at the next interval."""
        if self._poked is None or self._poked.done():
            self._poked = asyncio.ensure_future(self.check_now())

    async def check_now(self) -> bool:
        """Run every check once, update the status and tell listeners of a change."""
        results = await asyncio.gather(*(self._run_one(n, c) for n, c in self.checks.items()))
        for name, ok in zip(self.checks, results, strict=True):
            if ok and not self.status[name]:
                log.info("health: %s is up", name)
            self.status[name] = ok
        ready = all(results)
        if ready != self._ready:
            self._ready = ready
            for listener in self.listeners:
                await listener(ready)
        return ready

    async def start(self) -> None:
        await self.check_now()
        self._task = asyncio.create_task(self._loop(), name="health-monitor")

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.check_now()

    async def stop(self) -> None:
        if self._poked is not None:
            self._poked.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
