"""The App: servers start in order and stop in reverse; a stop during start-up ends it."""

from __future__ import annotations

import asyncio
import threading

import pytest

from brokerline.app import App
from brokerline.testing import eventually


class RecordingServer:
    """A server that records its calls; `hang` makes its start wait until cancelled."""

    def __init__(self, name: str, log: list[str], *, hang: bool = False,
                 fail: bool = False) -> None:
        self.name, self.log, self.hang, self.fail = name, log, hang, fail

    async def start(self) -> None:
        self.log.append(f"start {self.name}")
        if self.fail:
            raise RuntimeError(f"{self.name} cannot start")
        if self.hang:
            await asyncio.Event().wait()  # e.g. a subscribe waiting on a broker that is gone

    async def stop(self, timeout: float) -> None:
        self.log.append(f"stop {self.name}")


async def test_servers_stop_in_reverse_order_then_the_after_stop_hooks() -> None:
    log: list[str] = []

    async def closed() -> None:
        log.append("resources closed")

    app = App("t", [RecordingServer("a", log), RecordingServer("b", log)], 1,
              after_stop=[closed])
    running = asyncio.create_task(app.run())
    await eventually(lambda: len(log) == 2)
    app.request_stop()
    await asyncio.wait_for(running, 5)
    assert log == ["start a", "start b", "stop b", "stop a", "resources closed"]
    # the stop watchdog (it ends a process whose stop hangs) is disarmed by a clean stop:
    # left armed, it would end the process this App ran in (a test run) seconds later
    await eventually(lambda: not any(isinstance(t, threading.Timer) and t.is_alive()
                                     for t in threading.enumerate()))


async def test_a_stop_during_start_up_ends_it_and_stops_what_started() -> None:
    log: list[str] = []
    app = App("t", [RecordingServer("a", log), RecordingServer("b", log, hang=True),
                    RecordingServer("c", log)], 1)
    running = asyncio.create_task(app.run())
    await eventually(lambda: "start b" in log)
    app.request_stop()
    await asyncio.wait_for(running, 5)  # before: it waited on b's start for ever
    assert log == ["start a", "start b", "stop a"]


async def test_a_start_up_failure_is_raised_after_stopping_what_started() -> None:
    log: list[str] = []
    app = App("t", [RecordingServer("a", log), RecordingServer("b", log, fail=True)], 1)
    with pytest.raises(RuntimeError, match="b cannot start"):
        await asyncio.wait_for(app.run(), 5)
    assert log == ["start a", "start b", "stop a"]
