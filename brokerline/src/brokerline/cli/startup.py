"""Starting a role's servers so that SIGINT or SIGTERM can stop it at any moment.

Start-up may spend half a minute retrying the first connection to the broker; a signal then
must stop it at once, with the embedded broker (if one was started) stopped too.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from dependency_injector import providers

log = logging.getLogger("brokerline.startup")
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
T = TypeVar("T")


async def provided(value: Any) -> Any:
    """A provider's value: resources, and what depends on them, come as awaitables."""
    return await value if inspect.isawaitable(value) else value


def _unless_cancelled(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """The loop's error report, except for the cancellations of an interrupted start-up.

    The dependency-injector's callbacks re-raise the cancellation of the resources they wait
    for, or find the future they would resolve already cancelled (InvalidStateError); that is
    the interruption working, not an error.
    """
    if not isinstance(context.get("exception"), (asyncio.CancelledError,
                                                 asyncio.InvalidStateError)):
        loop.default_exception_handler(context)


async def start_interruptibly(start: Callable[[], Awaitable[T]]) -> T | None:
    """What `start()` returns (an App, its resources connected); None if a signal stopped it.

    Start-up may spend half a minute in connection retries. A signal meanwhile cancels every
    task of the loop: at this point they all are start-up work, and the resources initialise
    in tasks of the dependency-injector that cancelling this one would not reach. The App
    installs its own handlers once it runs (they replace these).
    """
    loop = asyncio.get_running_loop()
    interrupted: list[signal.Signals] = []

    def interrupt(signum: signal.Signals) -> None:
        if interrupted:  # a second signal: the clean-up under way is short and bounded
            return
        interrupted.append(signum)
        loop.set_exception_handler(_unless_cancelled)
        for task in asyncio.all_tasks(loop):
            task.cancel()

    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, interrupt, sig)
    try:
        return await start()
    except BaseException:
        if not interrupted:
            raise
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        log.info("start-up stopped by %s", interrupted[0].name)
        return None


async def shutdown_interrupted(container: Any) -> None:
    """Shut down the resources of an interrupted start-up, each on its own.

    A resource whose start was cancelled has cleaned up after itself (the broker resource
    stops its embedded broker); shutting it down re-raises the cancellation, which must not
    keep the others from closing.
    """
    for resource in container.traverse(types=[providers.Resource]):
        with contextlib.suppress(asyncio.CancelledError):
            await provided(resource.shutdown())
