"""Which handler failures are an unavailable dependency rather than a bad message.

A database that is down, a dropped connection or a timeout says nothing about the message:
retrying it against the broker's delivery budget would dead-letter good messages during any
outage longer than the backoff. `is_transient` tells the two apart for the Dispatcher:

- `Transient`, raised by a handler for a dependency of its own;
- connection-level OS errors (`ConnectionError`, `TimeoutError`, DNS failures, ...);
- SQLAlchemy's connection-level errors: a connection invalidated by a disconnect,
  `OperationalError`, `InterfaceError`, a pool `TimeoutError`, `DisconnectionError`
  (looked up only when SQLAlchemy is loaded: the broker layer does not import it);
- asyncpg's connection errors when they arrive unwrapped;
- any exception type given to `register_transient`.

`DataError`, `IntegrityError` and everything else stay message failures: retried with
backoff, then dead-lettered. The exception's cause chain is searched too, so a transient
error wrapped in an application exception is still recognised.
"""

from __future__ import annotations

import errno
import re
import socket
import sys

from brokerline.core.errors import Transient

#: errno values of an OSError that mean "the network or the machine", not "this message"
_TRANSIENT_ERRNOS = frozenset(
    getattr(errno, name) for name in (
        "ECONNREFUSED", "ECONNRESET", "ECONNABORTED", "EPIPE", "ETIMEDOUT", "EHOSTUNREACH",
        "ENETUNREACH", "ENETDOWN", "EHOSTDOWN", "EAGAIN", "ENOBUFS", "ENOSPC", "EMFILE",
        "ENFILE", "ENOMEM", "EADDRNOTAVAIL",
    ) if hasattr(errno, name)
)
MAX_DESCRIPTION = 200
_registered: list[type[BaseException]] = []


def register_transient(*types: type[BaseException]) -> None:
    """Treat these exception types (and their subclasses) as an unavailable dependency."""
    _registered.extend(types)


def _is_transient_one(exc: BaseException) -> bool:
    if isinstance(exc, (Transient, ConnectionError, TimeoutError, socket.gaierror)):
        return True
    if isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNOS:
        return True
    if _registered and isinstance(exc, tuple(_registered)):
        return True
    sa = sys.modules.get("sqlalchemy.exc")
    if sa is not None:
        if isinstance(exc, sa.DBAPIError) and exc.connection_invalidated:
            return True
        if isinstance(exc, (sa.OperationalError, sa.InterfaceError, sa.TimeoutError,
                            sa.DisconnectionError)):
            return True
    asyncpg = sys.modules.get("asyncpg.exceptions")
    if asyncpg is not None and isinstance(
        exc, (asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
              asyncpg.CannotConnectNowError, asyncpg.TooManyConnectionsError)
    ):
        return True
    return False


def describe_failure(exc: BaseException) -> str:
    """A short, log-safe account of a failure: the error types and the first line of the
    driver's message. Never SQLAlchemy's `str(exc)`: it carries the statement and its
    parameters, i.e. the payload."""
    sa = sys.modules.get("sqlalchemy.exc")
    if sa is not None and isinstance(exc, sa.StatementError) and exc.orig is not None:
        return f"{type(exc).__name__}: {describe_failure(exc.orig)}"
    text = str(exc).strip().splitlines()
    first = _without_argument_value(exc, text[0])[:MAX_DESCRIPTION] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


#: asyncpg quotes a value it cannot send ("invalid input for query argument $4: 'the
#: value' (why)"), and the value is a row's content: only the argument and the cause remain
_ARGUMENT_VALUE = re.compile(r"(invalid input for query argument \$\d+): .*")


def _without_argument_value(exc: BaseException, line: str) -> str:
    if not _ARGUMENT_VALUE.search(line):
        return line
    cause = exc
    while cause.__cause__ is not None:
        cause = cause.__cause__
    why = f" ({type(cause).__name__})" if cause is not exc else ""
    return _ARGUMENT_VALUE.sub(lambda found: f"{found.group(1)}{why}", line)


def is_transient(exc: BaseException) -> bool:
    """Whether `exc` (or an exception it was raised from) means a dependency is unavailable."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if _is_transient_one(current):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False
