"""Broker URLs: their schemes, the credentials they may carry, and how to print them safely.

A URL may carry credentials (`nats://user:pass@host:4222`). They are used to connect and
never printed: every URL shown in a log line or an error goes through `redact`, and the log
formatters pass every line through `redact_text` as a backstop.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit, urlunsplit

#: `scheme://userinfo@` anywhere in a text; the userinfo is what `redact_text` hides
_CREDENTIALS = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^\s/,'\"]+@")


def redact(url: str) -> str:
    """`url` safe to print: credentials in it (nats://user:pass@host) become `***`."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))


def redact_text(text: str) -> str:
    """`text` with the credentials of every URL in it replaced by `***`."""
    return _CREDENTIALS.sub(r"\1***@", text) if "@" in text else text


def credentials(url: str) -> tuple[str | None, str | None]:
    """The (percent-decoded) user and password in `url`, each None when absent."""
    parts = urlsplit(url)
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    return user, password


def without_credentials(url: str) -> str:
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


#: per broker kind: the URL schemes it accepts, and an example
URL_FORMS: dict[str, tuple[tuple[str, ...], str]] = {
    "NATS": (("nats", "tls", "ws", "wss"), "nats://host:4222"),
    "Pulsar": (("pulsar", "pulsar+ssl"), "pulsar://host:6650"),
}


def check_scheme(url: str, kind: str) -> str:
    """`url` if its scheme (when it has one) is one of the `kind` broker's; else ValueError."""
    if "://" not in url:
        return url
    schemes, example = URL_FORMS[kind]
    scheme = url.split("://", 1)[0].lower()
    if scheme not in schemes or not urlsplit(url).netloc:
        accepted = ", ".join(s + "://" for s in schemes)
        raise ValueError(
            f"{redact(url)!r} is not a {kind} URL; write it as {example} ({accepted})"
        )
    if kind == "Pulsar" and "@" in urlsplit(url).netloc:
        raise ValueError(
            f"{redact(url)!r} holds credentials, which Pulsar URLs cannot carry; remove them "
            "and set the token in PULSAR_JWT_TOKEN (broker.pulsar.jwt_token)"
        )
    return url
