"""Building the Pulsar client from `PulsarSettings`, naming topics, and explaining failures.

Kept apart from the broker so that every setting-to-client decision (service URL list, JWT,
TLS, timeouts, logging) and every error translation is in one small place.

Client logs: handing the client a Python logger makes its C++ threads take the GIL for every
log statement, debug ones included, since the binding cannot see the Python level: two per
message published (the batch container logs each add) and more per message received, which
halved throughput. So the client logs its warnings and errors through its own console logger
(stdout, plain text), filtered in C++; only when the `pulsar.client` Python logger is set to
DEBUG do all of the client's logs go through Python logging, to debug the client.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pulsar
from pulsar.asyncio import Client, PulsarException

from brokerline.core.errors import BrokerError, BrokerUnavailable
from brokerline.pulsar.settings import PulsarSettings

log = logging.getLogger("broker.pulsar")

#: `pulsar.Result.Ok` as an int. The binding hands each callback a new `Result` object, so
#: `result is Ok` never holds, and `result != Ok` goes through the binding's enum comparison
#: (about 1 us, once per send and per ack); `result.value != OK_VALUE` is a fifth of that.
OK_VALUE: int = pulsar.Result.Ok.value

SCHEMES = ("pulsar", "pulsar+ssl")
DOMAINS = ("persistent://", "non-persistent://")

COMPRESSION: dict[str, pulsar.CompressionType] = {
    "none": pulsar.CompressionType.NONE,
    "lz4": pulsar.CompressionType.LZ4,
    "zlib": pulsar.CompressionType.ZLib,
    "zstd": pulsar.CompressionType.ZSTD,
    "snappy": pulsar.CompressionType.SNAPPY,
}

BATCHING: dict[str, pulsar.BatchingType] = {
    "default": pulsar.BatchingType.Default,
    "key_based": pulsar.BatchingType.KeyBased,
}

#: the client's INFO lines (one per connection, producer and consumer) stay off its console
#: unless `pulsar.client` is at DEBUG, where everything goes through Python logging
CLIENT_LOG_LEVELS = ((logging.WARNING, pulsar.LoggerLevel.Warn),)

REGEX_MODES: dict[str, pulsar.RegexSubscriptionMode] = {
    "persistent": pulsar.RegexSubscriptionMode.PersistentOnly,
    "non_persistent": pulsar.RegexSubscriptionMode.NonPersistentOnly,
    "all": pulsar.RegexSubscriptionMode.AllTopics,
}


def choice(table: dict[str, Any], value: str, setting: str) -> Any:
    """Look up an enumerated setting, or fail naming the setting and the accepted values."""
    try:
        return table[value.strip().lower()]
    except KeyError:
        raise BrokerError(
            f"pulsar setting {setting}={value!r} is not valid; use one of: " + ", ".join(table)
        ) from None


def service_url(settings: PulsarSettings) -> str:
    """One client URL for all configured brokers: `pulsar://a:6650,b:6650`.

    The Pulsar client fails over between the hosts of one URL; mixing `pulsar://` and
    `pulsar+ssl://` is refused because the client uses one transport for all of them.
    """
    urls = [u.strip() for url in settings.service_urls for u in url.split(",") if u.strip()]
    if not urls:
        raise BrokerError(
            "no Pulsar service URL is configured; set MQ_NAME_SERVER=pulsar://host:6650 "
            "(several hosts separated by commas), or start the embedded pulsar-lite"
        )
    schemes, hosts = set(), []
    for url in urls:
        parts = urlsplit(url if "://" in url else f"pulsar://{url}")
        if parts.scheme not in SCHEMES or not parts.netloc:
            raise BrokerError(
                f"Pulsar service URL {url!r} is not valid; write it as pulsar://host:6650 "
                "or pulsar+ssl://host:6651"
            )
        schemes.add(parts.scheme)
        hosts.append(parts.netloc)
    if len(schemes) > 1:
        raise BrokerError(
            "the Pulsar service URLs mix pulsar:// and pulsar+ssl://; use one scheme for all hosts"
        )
    return f"{schemes.pop()}://{','.join(hosts)}"


def client_logger() -> logging.Logger | pulsar.ConsoleLogger:
    """The client's logger: see the module docstring for why not always Python logging."""
    python_logger = logging.getLogger("pulsar.client")
    if python_logger.isEnabledFor(logging.DEBUG):
        return python_logger
    for level, client_level in CLIENT_LOG_LEVELS:
        if python_logger.isEnabledFor(level):
            return pulsar.ConsoleLogger(client_level)
    return pulsar.ConsoleLogger(pulsar.LoggerLevel.Error)


def client_kwargs(settings: PulsarSettings, url: str) -> dict[str, Any]:
    """Keyword arguments of `pulsar.asyncio.Client` for these settings (validated)."""
    kwargs: dict[str, Any] = {
        "operation_timeout_seconds": max(1, round(settings.operation_timeout)),
        "connection_timeout_ms": max(100, int(settings.connection_timeout * 1000)),
        "logger": client_logger(),
    }
    if settings.jwt_token is not None and settings.jwt_token.get_secret_value():
        token = settings.jwt_token.get_secret_value()
        kwargs["authentication"] = pulsar.AuthenticationToken(token)
        log.info("pulsar: using JWT authentication, token length %d", len(token))
    tls = settings.tls
    if url.startswith("pulsar+ssl://"):
        kwargs["use_tls"] = True
        kwargs["tls_validate_hostname"] = tls.verify_hostname
        for setting, path in (("ca_file", tls.ca_file), ("cert_file", tls.cert_file),
                              ("key_file", tls.key_file)):
            if path and not os.path.isfile(path):
                raise BrokerError(
                    f"the Pulsar TLS {setting} {path!r} does not exist; "
                    "fix the path or remove the setting"
                )
        if tls.ca_file:
            kwargs["tls_trust_certs_file_path"] = tls.ca_file
        if bool(tls.cert_file) != bool(tls.key_file):
            raise BrokerError(
                "Pulsar mutual TLS needs both tls.cert_file and tls.key_file; set both or neither"
            )
        if tls.cert_file:
            kwargs["tls_certificate_file_path"] = tls.cert_file
            kwargs["tls_private_key_file_path"] = tls.key_file
    elif tls.ca_file or tls.cert_file:
        log.warning("pulsar: TLS files are configured but the service URL is %s; "
                    "they are ignored (use pulsar+ssl:// to encrypt)", url.split("://")[0])
    return kwargs


class TopicNames:
    """Resolves short topic names against the configured tenant and namespace.

    `orders` -> `persistent://public/default/orders`; `tenant/ns/orders` keeps its tenant and
    namespace; full names (`persistent://...`, `non-persistent://...`) pass unchanged.
    """

    def __init__(self, tenant: str, namespace: str) -> None:
        self.tenant = tenant
        self.namespace = namespace

    def full(self, name: str) -> str:
        if name.startswith(DOMAINS):
            return name
        if "://" in name:
            raise BrokerError(
                f"topic {name!r} has an unknown domain; use persistent:// or non-persistent://"
            )
        parts = name.split("/")
        if len(parts) == 1:
            return f"persistent://{self.tenant}/{self.namespace}/{name}"
        if len(parts) == 3:
            return f"persistent://{name}"
        raise BrokerError(
            f"topic {name!r} is not a Pulsar topic name; use `topic`, `tenant/namespace/topic` "
            "or `persistent://tenant/namespace/topic`"
        )

    @staticmethod
    def persistent(full_name: str) -> str:
        """The same topic in the persistent domain (dead letters must survive a restart)."""
        if full_name.startswith("non-persistent://"):
            return "persistent://" + full_name.removeprefix("non-persistent://")
        return full_name


def result_name(exc: BaseException) -> str:
    if isinstance(exc, PulsarException):
        return str(exc.error().name)
    return type(exc).__name__


def unreachable_hint(url: str) -> str:
    """What to check when the client cannot reach the broker (a failed TLS handshake looks
    the same to it: the client only logs why, so the TLS suspects are named)."""
    hint = "check MQ_NAME_SERVER and that the broker is running"
    if url.startswith("pulsar+ssl://"):
        hint += (
            ", listens with TLS and has a certificate that tls.ca_file trusts; if it requires "
            "client certificates (mutual TLS), set tls.cert_file and tls.key_file to a "
            "certificate its CA signed"
        )
    return hint


def explain(exc: BaseException, doing: str, url: str) -> BrokerError:
    """One sentence for a failed client call: what failed and what to do about it."""
    name = result_name(exc)
    if name in ("AuthenticationError", "ErrorGettingAuthenticationData"):
        return BrokerError(
            f"Pulsar at {url} refused the credentials while {doing}; check PULSAR_JWT_TOKEN"
        )
    if name == "AuthorizationError":
        return BrokerError(
            f"Pulsar at {url} denied {doing}; grant this token's role access to the namespace"
        )
    if name in ("ConsumerBusy",):
        return BrokerError(
            f"{doing} was refused: the subscription is exclusive and already has a consumer; "
            "use another group or a shared subscription type"
        )
    if name in ("Timeout", "ConnectError", "Disconnected", "Retryable", "ServiceUnitNotReady",
                "AlreadyClosed", "TimeOut"):
        return BrokerUnavailable(
            f"could not reach Pulsar at {url} while {doing} ({name}); {unreachable_hint(url)}"
        )
    return BrokerError(f"Pulsar failed while {doing}: {exc}")


class SharedClients:
    """One `pulsar.asyncio.Client` per process and configuration, counted by its users.

    Pulsar recommends one client per application (it owns the IO threads and connection
    pool). Sharing it also keeps consumer ids unique within a process, which pulsar-lite needs:
    it refuses a second consumer on a subscription whose client-local id is already taken.
    """

    def __init__(self) -> None:
        self._clients: dict[tuple[Any, ...], tuple[Client, int]] = {}

    @staticmethod
    def key(settings: PulsarSettings, url: str) -> tuple[Any, ...]:
        token = settings.jwt_token.get_secret_value() if settings.jwt_token else None
        tls = settings.tls
        return (url, token, tls.ca_file, tls.cert_file, tls.key_file, tls.verify_hostname,
                settings.operation_timeout, settings.connection_timeout)

    def acquire(self, key: tuple[Any, ...], create: Callable[[], Client]) -> Client:
        client, users = self._clients.get(key) or (create(), 0)
        self._clients[key] = (client, users + 1)
        return client

    def release(self, key: tuple[Any, ...]) -> Client | None:
        """Forget one user; returns the client when it was the last one (the caller closes it)."""
        client, users = self._clients.pop(key)
        if users > 1:
            self._clients[key] = (client, users - 1)
            return None
        return client
