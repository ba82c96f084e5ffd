"""Which failures are an unavailable dependency, and how they are described in logs."""

from __future__ import annotations

import pytest
from sqlalchemy import exc as sa

from brokerline.core import (
    Reject,
    Transient,
    is_transient,
    register_transient,
)
from brokerline.core.transient import describe_failure


def _statement_error(kind: type[sa.DBAPIError], orig: Exception) -> sa.DBAPIError:
    return kind("INSERT INTO t (content) VALUES (?)", [("secret report body",)], orig)


@pytest.mark.parametrize("exc", [
    Transient("down"),
    ConnectionRefusedError(111, "refused"),
    TimeoutError(),
    OSError(104, "Connection reset by peer"),
    _statement_error(sa.OperationalError, ConnectionRefusedError(111, "refused")),
    _statement_error(sa.InterfaceError, Exception("connection is closed")),
    sa.TimeoutError("QueuePool limit reached"),
])
def test_transient(exc: Exception) -> None:
    assert is_transient(exc)


@pytest.mark.parametrize("exc", [
    ValueError("bad"),
    Reject("never"),
    _statement_error(sa.DataError, Exception('invalid byte sequence for encoding "UTF8": 0x00')),
    _statement_error(sa.IntegrityError, Exception("NOT NULL constraint failed")),
    _statement_error(sa.ProgrammingError, Exception("no such column")),
    FileNotFoundError(2, "No such file"),
])
def test_not_transient(exc: Exception) -> None:
    assert not is_transient(exc)


def test_a_transient_cause_is_found_through_wrapping() -> None:
    class AppError(Exception):
        pass

    try:
        try:
            raise ConnectionResetError(104, "reset")
        except ConnectionResetError as inner:
            raise AppError("saving failed") from inner
    except AppError as outer:
        assert is_transient(outer)


def test_registered_types_are_transient() -> None:
    class DownstreamBusy(Exception):
        pass

    assert not is_transient(DownstreamBusy())
    register_transient(DownstreamBusy)
    assert is_transient(DownstreamBusy())


def test_descriptions_carry_no_statement_or_parameters() -> None:
    error = _statement_error(sa.DataError, ValueError("invalid byte sequence: 0x00"))
    text = describe_failure(error)
    assert text == "DataError: ValueError: invalid byte sequence: 0x00"
    assert "secret" not in text and "INSERT" not in text
