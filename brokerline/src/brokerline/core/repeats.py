"""Repeated log lines, aggregated: a burst of one failure is one line, not thousands.

`RepeatedLog.log(kind, ...)` logs the first line of each `kind` at once; further lines of that
kind within `window` seconds are counted, and the next line after the window says how many
were left out. Nothing is buffered: there is no timer, and a quiet logger costs nothing.
"""

from __future__ import annotations

import logging
import time
from typing import Any

WINDOW = 10.0


class RepeatedLog:
    def __init__(self, logger: logging.Logger, level: int, window: float = WINDOW) -> None:
        self._log = logger
        self._level = level
        self._window = window
        self._last: dict[str, float] = {}  # kind -> when it was last logged
        self._skipped: dict[str, int] = {}  # kind -> lines left out since

    def log(self, kind: str, message: str, *args: Any) -> None:
        if not self._log.isEnabledFor(self._level):
            return
        now = time.monotonic()
        last = self._last.get(kind)
        if last is not None and now - last < self._window:
            self._skipped[kind] = self._skipped.get(kind, 0) + 1
            return
        skipped = self._skipped.pop(kind, 0)
        self._last[kind] = now
        if skipped:
            message += " (and %d more like it in the last %.0fs)"
            args = (*args, skipped, now - last if last is not None else self._window)
        self._log.log(self._level, message, *args)
