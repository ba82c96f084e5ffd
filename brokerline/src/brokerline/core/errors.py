"""Errors of the broker layer, and the two exceptions a handler raises to choose its outcome."""

from __future__ import annotations


class BrokerError(Exception):
    """A broker operation failed; the message says what and what to do."""


class BrokerUnavailable(BrokerError):
    """The broker cannot be reached (at connect, or it went away and did not come back)."""


class UnknownBrokerType(BrokerError):
    """The configured broker type has no plugin."""


class DecodeError(Exception):
    """A message body does not match the handler's type: it is dead-lettered, never retried."""


class Retry(Exception):
    """Raised by a handler: redeliver this message, after `delay` seconds if given.

    Counts towards `max_deliveries` like any failure.
    """

    def __init__(self, reason: str = "retry requested", delay: float | None = None) -> None:
        super().__init__(reason)
        self.delay = delay


class Transient(Exception):
    """Raised by a handler: a dependency (database, downstream service) is unavailable.

    Not a failure of the message: it never counts towards `max_deliveries` and is never
    dead-lettered. The subscription stops taking new messages, readiness reports NOT ready,
    and the message is handled again once the dependency answers. Connection errors,
    timeouts and SQLAlchemy's connection-level errors are treated the same way without being
    wrapped (see `transient.is_transient`).
    """


class Reject(Exception):
    """Raised by a handler: this message can never succeed; dead-letter it now."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
