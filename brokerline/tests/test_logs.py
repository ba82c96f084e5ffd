"""The log formatters never show credentials in a URL, whoever wrote the message."""

from __future__ import annotations

import io
import logging

from brokerline.logs import configure_logging

SECRET = "s3cr3t-Zq9-do-not-log"


def test_log_lines_never_show_url_credentials() -> None:
    """The formatters' backstop, for a URL that some library puts in its own message."""
    stream = io.StringIO()
    configure_logging("INFO", "text", stream)
    logging.getLogger("any.library").warning("lost nats://app:%s@10.0.0.1:4222, retrying", SECRET)
    configure_logging("INFO", "json", stream)
    logging.getLogger("any.library").warning("lost pulsar+ssl://t:%s@h:6651", SECRET)
    configure_logging("WARNING")
    assert SECRET not in stream.getvalue()
    assert "nats://***@10.0.0.1:4222" in stream.getvalue()
    assert "pulsar+ssl://***@h:6651" in stream.getvalue()
