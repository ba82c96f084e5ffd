"""What makes a report storable: the one set of rules the report service and the saver share.

The report service refuses (INVALID_ARGUMENT) a request these rules refuse, and the saver
dead-letters an event they refuse, so a report answered OK is always one the database can
hold, and an event from another producer that would be a junk row (no id, no time, the wrong
message type read as a report) never becomes one. The limits are the column sizes of
`data/models.py`, which reads them from here. Problems name fields and sizes, never values:
they end up in logs and dead-letter headers.
"""

from __future__ import annotations

import re

EVENT_ID_MAX_CHARS = 64
USER_ID_MAX_CHARS = 128
EVENT_NAME_MAX_CHARS = 128
STATUS_MAX_CHARS = 32
#: a client's request id (idempotency key): a UUID fits with room for the client's own schemes
REQUEST_ID_MAX_CHARS = 128
#: a report body, as the report API accepts it (UTF-8 bytes)
CONTENT_MAX_BYTES = 64 * 1024
#: the latest creation time a row can hold: 9999-12-31 23:59:59.999 UTC (where datetime ends)
MAX_CREATE_TIME_MS = 253_402_300_799_999

# printable ASCII without spaces: what an HTTP header carries unchanged, and no newline, so
# the event id derivation (biz.report.event_id_for) can join it to the user id unambiguously
_REQUEST_ID = re.compile(r"[\x21-\x7e]+")
# UTF-16 halves without their partner: no UTF-8 encoding, so no database can store them
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def text_problem(
    name: str, value: str, *, required: bool = False, max_chars: int | None = None
) -> str | None:
    """Why `value` cannot be stored as the text field `name` (None when it can)."""
    if required and (not value or value.isspace()):
        return f"{name} is required"
    if max_chars is not None and len(value) > max_chars:
        return f"{name} is longer than {max_chars} characters ({len(value)})"
    if "\x00" in value:
        return f"{name} contains a NUL character, which the database cannot store"
    if not value.isascii() and _LONE_SURROGATE.search(value):
        return f"{name} contains a lone UTF-16 surrogate, which is not valid text"
    return None


def request_id_problem(request_id: str) -> str | None:
    """Why `request_id` cannot identify a report (None when it can, or when it is empty)."""
    if not request_id:
        return None
    if len(request_id) > REQUEST_ID_MAX_CHARS:
        return (f"request_id is longer than {REQUEST_ID_MAX_CHARS} characters "
                f"({len(request_id)}); send a shorter one, such as a UUID")
    if not _REQUEST_ID.fullmatch(request_id):
        return ("request_id may hold only printable ASCII characters without spaces; send a "
                "UUID or another token of letters, digits and punctuation")
    return None


def create_time_problem(create_time_ms: int) -> str | None:
    if create_time_ms == 0:
        return "create_time_ms is missing"
    if not 0 < create_time_ms <= MAX_CREATE_TIME_MS:
        return f"create_time_ms {create_time_ms} is not a time after 1970 and before 10000"
    return None


def _found(*problems: str | None) -> list[str]:
    return [p for p in problems if p is not None]


def post_report_problems(
    *, user_id: str, event_name: str, content: str, request_id: str = ""
) -> list[str]:
    """Why the report service must refuse this report (empty when it can accept it)."""
    problems = _found(
        text_problem("user_id", user_id, required=True, max_chars=USER_ID_MAX_CHARS),
        text_problem("event_name", event_name, required=True, max_chars=EVENT_NAME_MAX_CHARS),
        text_problem("content", content),
        request_id_problem(request_id),
    )
    size = len(content.encode("utf-8", "surrogatepass"))
    if size > CONTENT_MAX_BYTES:
        problems.append(f"content is longer than {CONTENT_MAX_BYTES} bytes ({size})")
    return problems


def report_event_problems(
    *, event_id: str, user_id: str, event_name: str, report_data: str, create_time_ms: int
) -> list[str]:
    """Why the saver cannot store this report event (empty when it can)."""
    return _found(
        text_problem("event_id", event_id, required=True, max_chars=EVENT_ID_MAX_CHARS),
        text_problem("user_id", user_id, required=True, max_chars=USER_ID_MAX_CHARS),
        text_problem("event_name", event_name, required=True, max_chars=EVENT_NAME_MAX_CHARS),
        text_problem("report_data", report_data),
        create_time_problem(create_time_ms),
    )


def status_event_problems(
    *, event_id: str, user_id: str, status: str, create_time_ms: int
) -> list[str]:
    """Why the saver cannot store this accept-status event (empty when it can)."""
    return _found(
        text_problem("event_id", event_id, required=True, max_chars=EVENT_ID_MAX_CHARS),
        text_problem("user_id", user_id, required=True, max_chars=USER_ID_MAX_CHARS),
        text_problem("status", status, required=True, max_chars=STATUS_MAX_CHARS),
        create_time_problem(create_time_ms),
    )
