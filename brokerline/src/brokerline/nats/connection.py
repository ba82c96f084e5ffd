"""Opening a NATS connection from `NatsSettings`: shared by the core and JetStream plugins.

Covers the server URL list (comma-separated entries are split), reconnect settings, token,
user/password (as settings or in a URL: nats://user:pass@host, percent-encoded), NKey seed
file, a user JWT signed with the NKey seed, a `.creds` file, and TLS with a CA file (and a
client certificate for mutual TLS).

The first connection is bounded by `connect_timeout`: nats-py would otherwise retry an
unreachable server forever. A rejected credential or a failed TLS handshake fails at once,
with one sentence naming the problem and the setting to fix. No secret is ever logged or put
in an error message; a token is described by its length only.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import logging
import ssl
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client as NatsClient
from nats.nuid import NUID
from pydantic import SecretStr

from brokerline.core.base import MESSAGE_ID_HEADER
from brokerline.core.errors import BrokerError, BrokerUnavailable
from brokerline.core.repeats import RepeatedLog
from brokerline.core.urls import check_scheme, credentials, redact, without_credentials
from brokerline.nats.settings import NatsSettings

log = logging.getLogger("broker.nats")

#: header that carries the message key (NATS has no key of its own)
KEY_HEADER = "x-message-key"
#: JetStream's deduplication id; the plugins also use it as the message id on NATS core
MSG_ID_HEADER = "Nats-Msg-Id"
CONTENT_TYPE = "content-type"
#: headers owned by the NATS server or this plugin, hidden from handlers
INTERNAL_PREFIX = "nats-"


def server_urls(settings: NatsSettings) -> list[str]:
    """The configured servers, with comma-separated entries split (`NATS_SERVER_URL`)."""
    urls = [u.strip() for entry in settings.servers for u in entry.split(",") if u.strip()]
    if not urls:
        raise BrokerError(
            "no NATS server is configured; set NATS_SERVER_URL (or broker.nats.servers) "
            "to e.g. nats://127.0.0.1:4222"
        )
    try:
        return [check_scheme(u if "://" in u else f"nats://{u}", "NATS") for u in urls]
    except ValueError as exc:
        raise BrokerError(f"NATS server URL {exc}") from None


def url_credentials(
    settings: NatsSettings, urls: list[str]
) -> tuple[NatsSettings, list[str], bool]:
    """The settings with the credentials of the URLs moved in, the URLs without them, and
    whether any were moved (configured credentials win over those in a URL).

    nats-py would read them from the URL too, but leave percent-encoded characters encoded,
    and the URLs it holds may end up in its messages; so they travel as options instead.
    """
    plain = [without_credentials(u) for u in urls]
    found = next((credentials(u) for u in urls if credentials(u)[0] is not None), None)
    configured = (settings.user or settings.token or settings.nkey_seed or settings.credentials
                  or settings.jwt_token)
    if found is None or configured:
        return settings, plain, False
    user, password = found
    if password is None:  # nats://token@host
        return settings.model_copy(update={"token": SecretStr(user or "")}), plain, True
    update = {"user": user, "password": SecretStr(password)}
    return settings.model_copy(update=update), plain, True


def tls_context(settings: NatsSettings, urls: list[str]) -> ssl.SSLContext | None:
    """An SSL context when a URL is tls:// or a TLS file is configured; else None."""
    tls = settings.tls
    wants_tls = any(u.startswith("tls://") for u in urls)
    if not (wants_tls or tls.ca_file or tls.cert_file):
        return None
    context = ssl.create_default_context(cafile=tls.ca_file)
    if tls.cert_file:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    context.check_hostname = tls.verify_hostname
    return context


def _auth_options(settings: NatsSettings) -> tuple[dict[str, Any], str]:
    """nats-py keyword arguments for the configured credentials, and how to describe them."""
    if settings.jwt_token is not None or settings.credentials or settings.nkey_seed:
        try:
            import nkeys  # noqa: F401 - nats-py signs the server's nonce with it
        except ImportError:
            raise BrokerError(
                "NKey, JWT and credentials-file authentication need the nkeys package; "
                "install nats-py[nkeys]"
            ) from None
    if settings.jwt_token is not None:
        if not settings.nkey_seed:
            raise BrokerError(
                "NATS_JWT_TOKEN is set without NATS_NKEY_SEED; the user JWT must be signed "
                "with the user's NKey seed, so set NATS_NKEY_SEED to the seed file's path"
            )
        jwt = settings.jwt_token.get_secret_value().encode()
        seed = Path(settings.nkey_seed).read_bytes().strip()

        def sign(nonce: str) -> bytes:
            import nkeys  # the nats-py[nkeys] extra

            return base64.b64encode(nkeys.from_seed(seed).sign(nonce.encode()))

        return {"user_jwt_cb": lambda: jwt, "signature_cb": sign}, "a user JWT (NATS_JWT_TOKEN)"
    if settings.credentials:
        return {"user_credentials": settings.credentials}, "a credentials file"
    if settings.nkey_seed:
        return {"nkeys_seed": settings.nkey_seed}, "an NKey seed (NATS_NKEY_SEED)"
    if settings.token is not None:
        token = settings.token.get_secret_value()
        return {"token": token}, f"a token of {len(token)} characters (NATS_TOKEN)"
    if settings.user:
        password = settings.password.get_secret_value() if settings.password else ""
        described = f"user {settings.user!r} with a password (NATS_USERNAME, NATS_PASSWORD)"
        return {"user": settings.user, "password": password}, described
    return {}, "no credentials"


def _is_auth_error(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, nats.errors.AuthorizationError) or "authorization" in text


def _is_tls_error(exc: BaseException) -> bool:
    return isinstance(exc, ssl.SSLError) or "tls" in str(exc).lower()


async def open_connection(settings: NatsSettings) -> NatsClient:
    """Connect to NATS, or raise BrokerUnavailable / BrokerError with one clear sentence."""
    configured_urls = server_urls(settings)
    shown = ", ".join(redact(u) for u in configured_urls)
    settings, urls, from_url = url_credentials(settings, configured_urls)
    auth, described = _auth_options(settings)
    if from_url:
        described = described.split(" (")[0] + " from the server URL"
    fatal: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()
    last_error: list[BaseException] = []
    connected = False
    # every reconnect attempt of an outage fails alike: one line per kind, then a count
    connection_errors = RepeatedLog(log, logging.WARNING)

    async def on_error(exc: Exception) -> None:
        last_error[:] = [exc]
        if not connected and (_is_auth_error(exc) or _is_tls_error(exc)) and not fatal.done():
            fatal.set_result(exc)  # retrying cannot fix a rejected credential or certificate
        elif connected:
            connection_errors.log(type(exc).__name__, "NATS connection error: %s", exc)

    async def on_disconnected() -> None:
        if connected and not (client.is_closed or client.is_draining):
            log.warning("disconnected from NATS at %s; reconnecting", shown)

    async def on_reconnected() -> None:
        url = client.connected_url
        log.info("reconnected to NATS at %s", redact(url.geturl()) if url else "?")

    client = NatsClient()
    log.info("connecting to NATS at %s with %s", shown, described)
    connecting = asyncio.ensure_future(
        client.connect(
            servers=urls,
            name=settings.name,
            connect_timeout=settings.connect_timeout,  # type: ignore[arg-type]
            reconnect_time_wait=settings.reconnect_wait,  # type: ignore[arg-type]
            max_reconnect_attempts=settings.max_reconnect_attempts,
            tls=tls_context(settings, urls),
            error_cb=on_error,
            disconnected_cb=on_disconnected,
            reconnected_cb=on_reconnected,
            **auth,
        )
    )
    waiting: list[asyncio.Future[Any]] = [connecting, fatal]
    done, _ = await asyncio.wait(
        waiting, timeout=settings.connect_timeout, return_when="FIRST_COMPLETED"
    )
    if connecting in done and connecting.exception() is None:
        connected = True
        fatal.cancel()
        return client
    connecting.cancel()
    with contextlib.suppress(BaseException):
        await connecting
    with contextlib.suppress(Exception):
        await client.close()
    problem = fatal.result() if fatal.done() and not fatal.cancelled() else None
    if problem is None and connecting.done() and not connecting.cancelled():
        problem = connecting.exception()
    problem = problem or (last_error[0] if last_error else None)
    raise _explain(problem, shown, described, settings) from None


def _explain(
    problem: BaseException | None, shown: str, described: str, settings: NatsSettings
) -> BrokerError:
    if problem is not None and _is_auth_error(problem):
        return BrokerError(
            f"NATS at {shown} rejected the connection with {described} (authorization "
            "violation); set the credentials the server expects: NATS_TOKEN, NATS_USERNAME "
            "and NATS_PASSWORD, NATS_NKEY_SEED or NATS_JWT_TOKEN"
        )
    if problem is not None and _is_tls_error(problem):
        return BrokerError(
            f"the TLS handshake with NATS at {shown} failed ({problem}); use a tls:// URL and "
            "set broker.nats.tls.ca_file (NATS_TLS_CA_FILE) to the CA that signed the "
            "server's certificate"
        )
    reason = f" ({type(problem).__name__}: {problem})" if problem else ""
    return BrokerUnavailable(
        f"cannot reach NATS at {shown} within {settings.connect_timeout:g}s{reason}; start "
        "nats-server or set NATS_SERVER_URL to a reachable server"
    )


class MessageIds:
    """Unique message ids: a random NUID prefix per broker instance, then a counter.

    Unique across publishers (JetStream deduplicates on them) like a NUID per message, at a
    fifteenth of the cost (nats-py's NUID is pure Python, ~1.7 us).
    """

    def __init__(self) -> None:
        self._prefix = NUID().next().decode() + "."
        self._count = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}{next(self._count)}"


def split_headers(raw: dict[str, str] | None) -> tuple[dict[str, str], str | None, str | None]:
    """Headers for a handler, plus the message key and id carried in NATS headers."""
    if not raw:
        return {}, None, None
    key = raw.get(KEY_HEADER)
    msg_id = raw.get(MSG_ID_HEADER)
    visible = {
        k: v for k, v in raw.items()
        if k != KEY_HEADER and not k.lower().startswith(INTERNAL_PREFIX)
    }
    return visible, key, msg_id


def core_headers(headers: dict[str, str], key: str | None) -> dict[str, str] | None:
    """NATS core headers: None (a plain PUB) unless a key or more than the content type.

    Subscribers decode by their handler's annotation, so the content type alone is not worth
    a header block: HPUB and its parsing cost more than the rest of a small message's trip.
    """
    if key is None and (not headers or (len(headers) == 1 and CONTENT_TYPE in headers)):
        return None
    out = native_message_id(headers)
    if key is not None:
        out[KEY_HEADER] = key
    return out


def wire_headers(headers: dict[str, str], key: str | None, msg_id: str) -> dict[str, str]:
    """Headers to send: the envelope's, plus the key and a message id (kept if given)."""
    out = native_message_id(headers)
    if key is not None:
        out[KEY_HEADER] = key
    out.setdefault(MSG_ID_HEADER, msg_id)
    return out


def native_message_id(headers: dict[str, str]) -> dict[str, str]:
    """A copy of `headers` with the generic message id (MESSAGE_ID_HEADER) as `Nats-Msg-Id`.

    A `Nats-Msg-Id` the caller set itself wins: it is the more specific of the two.
    """
    out = dict(headers)
    message_id = out.pop(MESSAGE_ID_HEADER, None)
    if message_id is not None:
        out.setdefault(MSG_ID_HEADER, message_id)
    return out
